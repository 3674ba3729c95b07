"""The generation engine: the images of a request in, pictures out, on one shared pipeline.

`validate()` checks a request against every limit before any work (it needs the tokenizer
only). `run()` hands a list of images, each with its own seed, to the lane (webui/lane/),
which makes all pipeline calls on one thread, at most `max_batch_size` images each and
possibly shared with other requests; it reports per-step progress, stops at the next step
when cancelled, and passes each finished picture to the caller as soon as its call is done.
The engine knows nothing of jobs, files on disk or Gradio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from PIL import Image

from webui.lane import CAPTION_MULTIPLE, CallShape, CallStats, Job, Lane, LaneError, Progress, Start, WorkItem
from webui.loading import LoadedModel
from webui.lora_fit import linear_shapes
from webui.loras import LoraLibrary
from webui.request import GenerationRequest, RequestError, cannot_save
from webui.settings import DEFAULT_SIZE, DEFAULT_STEPS, Settings
from webui.validation import Validator

logger = logging.getLogger(__name__)

__all__ = ["Engine", "ImageTask", "Progress", "RequestError", "RunOutcome", "Start"]


@dataclass(frozen=True)
class ImageTask:
    """One image to make."""

    index: int  # the caller's number for it
    prompt: str  # what the model reads: the prompt, then the style
    seed: int
    start: Start | None = None  # what it starts from, for calls of other kinds than text


@dataclass(frozen=True)
class RunOutcome:
    made: dict[int, Any]  # on_image's result per image made, by index
    black: list[int]  # indexes of images that came out black (NaN) and were not passed on
    stopped: bool  # Stop (or shutdown) left images unmade


class Engine:
    """Runs generation on one loaded pipeline through one lane."""

    def __init__(
        self, model: LoadedModel, settings: Settings, on_stuck: Callable[[], None] | None = None
    ) -> None:
        """`on_stuck` runs when a stalled call never comes back (webui/watchdog.py)."""
        self.model = model
        self.settings = settings
        s = settings
        # The library the lane loads from; it checks files against the layers of this model, and
        # keeps the copies a GPU worker fetches by hash in its state folder.
        transformer = getattr(model.pipe, "transformer", None)  # none in a stand-in (tools/bench.py)
        shapes = None if transformer is None else linear_shapes(transformer)
        self.loras = LoraLibrary(s.lora_path, shapes, copies=s.state_path / "loras")
        self.lane = Lane(
            model,
            s.max_batch_size,
            s.cross_batching,
            s.attention_backend,
            s.stall_timeout,
            on_stuck,
            s.vae_tiling_above,
            # Prompts encoded ahead on a CUDA stream of their own; not with CPU offload, whose
            # hooks move whole models on and off the GPU around each call.
            prefetch=model.device.type == "cuda" and not s.cpu_offload,
            loras=self.loras,
            loras_kept=s.max_loras_loaded,
        )
        self.validator = Validator(model.pipe.tokenizer, settings)
        if s.compile:  # before any request: the first user must not wait for the compiler
            seconds = self.lane.calls.warm_up(DEFAULT_SIZE, DEFAULT_SIZE, DEFAULT_STEPS)
            logger.info("Warmed up the compiled transformer in %.1f s (%s)", seconds, model.label)
        self._active = 0  # runs inside run(), guarded by _count_lock
        self._count_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Whether images are being made now."""
        return self._active > 0

    @property
    def closing(self) -> bool:
        return self.lane.closing

    @property
    def stalled(self) -> bool:
        """A pipeline call stopped making progress and has not come back."""
        return self.lane.stalled

    @property
    def last_progress_at(self) -> float | None:
        """time.time() of the last finished denoising step, if any."""
        return self.lane.last_step_at

    @property
    def call_quiet_s(self) -> float:
        """Seconds the running pipeline call has gone without finishing a step; 0 between calls."""
        return self.lane.quiet_for()

    @property
    def stats(self) -> CallStats:
        return self.lane.stats

    def close(self) -> None:
        """Shut down: running work stops at its next step, new work is refused."""
        if not self.lane.closing:
            logger.info("Engine closing: stopping running requests at the next step")
        self.lane.close()

    def count_tokens(self, prompt: str) -> int:
        return self.validator.count_tokens(prompt)

    def validate(self, request: GenerationRequest) -> dict[str, int]:
        """Raise RequestError if the request breaks a limit (webui/validation.py)."""
        return self.validator.validate(request)

    def run(
        self,
        request: GenerationRequest,
        tasks: Sequence[ImageTask],
        *,
        on_image: Callable[[ImageTask, Image.Image], Any],
        label: str = "",
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        """Make `tasks` with `request`'s size, steps and guidance; RequestError says why not.

        `on_image` gets each finished picture on a saver thread, as soon as its call is done
        (an OSError from it fails the run with a message about the output folder). If
        `cancel` is set, the images in the running call are dropped (the call stops at its
        next step unless other work shares it); those finished before are kept. `on_start`
        runs once, before the first call that holds any of these images.
        """
        if self.closing:
            raise RequestError("shutting_down")
        if self.stalled:
            raise RequestError("stalled")
        by_index = {task.index: task for task in tasks}
        tokens = {text: self.count_tokens(text) for text in {task.prompt for task in tasks}}
        r = request
        shape = CallShape(
            r.width, r.height, r.steps, r.guidance_scale, r.negative_prompt, r.kind, r.strength, r.loras
        )
        job = Job(
            request_id=label,
            items=[
                WorkItem(t.index, t.prompt, t.seed, -(-tokens[t.prompt] // CAPTION_MULTIPLE), t.start)
                for t in tasks
            ],
            shape=shape,
            on_image=lambda item, image: (item.index, on_image(by_index[item.index], image)),
            cancel=cancel or threading.Event(),
            on_step=on_progress,
            on_start=on_start,
        )
        with self._count_lock:
            self._active += 1
        try:
            return self._wait(job)
        finally:
            with self._count_lock:
                self._active -= 1

    def _wait(self, job: Job) -> RunOutcome:
        self.lane.submit(job)
        while not job.done.wait(0.05):
            if job.stopped:  # a Stop, or the engine closing
                self.lane.withdraw(job)  # its images in a running call are dropped
                break
        futures.wait(list(job.saves))
        if isinstance(job.error, LaneError):  # out of memory, a stalled call: the message says it
            raise RequestError("plain", text=str(job.error)) from job.error
        if job.error is not None:  # a bug or a broken model: logged with its traceback by the lane
            raise RequestError(
                "plain",
                text=f"Generation failed: {type(job.error).__name__}: {job.error}. The server logged the "
                "details and goes on serving; try again, and tell an admin if it keeps happening.",
            ) from job.error
        unsaved = next((e for e in map(Future.exception, job.saves) if isinstance(e, OSError)), None)
        if unsaved is not None:  # disk full, folder not writable, ...: the server itself is fine
            logger.error("request %s: could not save images: %s", job.request_id, unsaved)
            raise cannot_save(unsaved, self.settings.output_dir)
        made = dict(result for result in (f.result() for f in job.saves) if result is not None)
        stopped = job.stopped and len(made) + len(job.black) < len(job.items)
        return RunOutcome(made, sorted(job.black), stopped)
