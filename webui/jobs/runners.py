"""Ways of running jobs. The job service decides what runs and when; a runner makes the images.

`LocalRunner` runs jobs in this process on its engine's lane (the default, embedded mode).
Another runner (GPU workers elsewhere) implements the same `Runner` protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from PIL import Image

from webui.engine import Engine, Progress
from webui.inputs import InputStore
from webui.jobs.execute import run_job
from webui.jobs.record import JobRecord, PlannedImage


class Runner(Protocol):
    """What the job service needs of whatever makes the images."""

    capacity: int  # jobs it takes at once (their images may share pipeline calls)

    def run(
        self,
        record: JobRecord,
        *,
        cancel: threading.Event,
        on_progress: Callable[[Progress], None],
        on_start: Callable[[], None],
        on_change: Callable[[PlannedImage, Image.Image | None], None],
    ) -> bool:
        """Make the record's planned images; True if `cancel` left some unmade. Blocks until
        done; RequestError says why it failed."""
        ...

    def seconds_per_unit(self) -> float | None:
        """Recent seconds per unit of work (pixels x steps of one image), for ETAs."""
        ...

    def close(self) -> None:
        """Stop running work at its next step; refuse more."""
        ...

    def placement(self, job_id: str) -> str:
        """Where a running job runs, for the Queue panel ("" when there is one place)."""
        ...

    def notice(self) -> str | None:
        """Why jobs are not moving, when something the runner needs is missing."""
        ...

    def health(self) -> dict[str, Any]:
        """Fields for /healthz; "problem" names what makes the server unhealthy (503), if any."""
        ...

    def models(self) -> list[str]:
        """The models jobs may name now, the default first (by label)."""
        ...

    def pause(self, paused: bool) -> None:
        """Start no new pipeline call while paused (running ones finish)."""
        ...

    def reorder(self, job_ids: list[str]) -> None:
        """Jobs already handed over take this order for their next calls."""
        ...


class LocalRunner:
    """Jobs run here, on the engine's lane."""

    def __init__(self, engine: Engine, inputs: InputStore | None = None) -> None:
        self.engine, self.inputs = engine, inputs
        s = engine.settings
        # The lane makes one call at a time whatever this is; with cross-user batching it needs
        # enough jobs in hand to fill the next call while one runs.
        self.capacity = 2 * s.max_batch_size if s.cross_batching else 1

    def run(
        self,
        record: JobRecord,
        *,
        cancel: threading.Event,
        on_progress: Callable[[Progress], None],
        on_start: Callable[[], None],
        on_change: Callable[[PlannedImage, Image.Image | None], None],
    ) -> bool:
        return run_job(
            self.engine,
            record,
            cancel=cancel,
            on_progress=on_progress,
            on_start=on_start,
            on_change=on_change,
            inputs=self.inputs,
        )

    def seconds_per_unit(self) -> float | None:
        return self.engine.stats.seconds_per_unit()

    def close(self) -> None:
        self.engine.close()

    def placement(self, job_id: str) -> str:
        return ""

    def notice(self) -> str | None:
        return None

    def models(self) -> list[str]:
        return [self.engine.model.label]  # one process, one model

    def pause(self, paused: bool) -> None:
        self.engine.lane.pause(paused)

    def reorder(self, job_ids: list[str]) -> None:
        self.engine.lane.reorder(job_ids)

    def health(self) -> dict[str, Any]:
        engine, stats = self.engine, self.engine.stats
        last = engine.last_progress_at
        return {
            "problem": "stalled" if engine.stalled else None,
            "mode": "embedded",
            "device": str(engine.model.device),
            "busy": engine.busy,
            "call_running": engine.lane.call_running,  # what a drain waits for
            "last_progress": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
            # Seconds the running pipeline call has gone without finishing a step.
            "call_quiet_s": round(engine.call_quiet_s, 1),
            "calls": {
                "count": stats.calls,
                "images": stats.images,
                "busy_s": round(stats.busy_s, 3),
                "idle_gap": stats.gap_summary(),
            },
        }
