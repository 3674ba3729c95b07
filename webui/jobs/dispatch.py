"""Running the job service's jobs (webui/jobs/service.py): each job the runner has room for
is handed to it, in queue order, on a thread of its own; its progress, its images and its end
are recorded as they come.

A job that the process died running before ("suspect") runs alone, so that whatever killed
the process cannot take other jobs down with it, and only it is counted against the limit
of resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from PIL import Image

from webui.engine import Progress
from webui.jobs.changes import Changes
from webui.jobs.execute import write_bundles
from webui.jobs.record import DONE, FAILED, QUEUED, RUNNING, STOPPED, JobRecord, PlannedImage, now_utc
from webui.jobs.runners import Runner
from webui.jobs.store import JobStore, persist
from webui.request import RequestError

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Live:
    """An unfinished job as the service holds it."""

    record: JobRecord
    cancel: threading.Event = field(default_factory=threading.Event)
    dispatched: bool = False  # handed to the runner
    stop_asked: bool = False
    progress: Progress | None = None
    thread: threading.Thread | None = None
    thumbnails: dict[int, Image.Image] = field(default_factory=dict)  # of this run, for the contact sheet

    @property
    def suspect(self) -> bool:
        return self.record.crash_resumes > 0


class Dispatch:
    """The running half of the job service, mixed into it: it uses the service's lock, its
    jobs in queue order, its runner, its store and its change counter."""

    store: JobStore
    runner: Runner
    changes: Changes
    _lock: threading.Condition
    _live: dict[str, Live]
    _paused: bool
    _closing: bool

    def _pump(self) -> None:
        """Hand the runner every job it has room for, in order. Under the lock."""
        while not self._closing:
            live = self._next()
            if live is None:
                return
            live.dispatched = True
            live.thread = threading.Thread(target=self._run, args=(live,), name=f"job-{live.record.id}")
            live.thread.start()

    def _next(self) -> Live | None:
        if self._paused:
            return None
        lives = list(self._live.values())
        active = [live for live in lives if live.dispatched]
        if any(live.suspect for live in active):
            return None
        waiting = next((live for live in lives if not live.dispatched), None)
        if waiting is None or (waiting.suspect and active):
            return None
        if len(active) >= self.runner.capacity:
            # Full, unless a job moved ahead of one handed over that has not started yet: it
            # goes to the runner too, which then follows the order (the lane holds both).
            behind = lives[lives.index(waiting) + 1 :]
            if not any(live.dispatched and live.record.status != RUNNING for live in behind):
                return None
        return waiting

    def _run(self, live: Live) -> None:
        record, started, error = live.record, time.monotonic(), None
        try:
            self.runner.run(
                record,
                cancel=live.cancel,
                on_progress=lambda p: self._progressed(live, p),
                on_start=lambda: self._started(record),
                on_change=lambda image, thumbnail: self._changed(live, image, thumbnail),
            )
        except RequestError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: the job fails with its name, the service goes on
            logger.exception("job %s failed", record.id)
            error = f"Generation failed: {type(exc).__name__}: {exc}. The server logged the details."
        record.elapsed_s += time.monotonic() - started
        interrupted = self._closing and not live.stop_asked and bool(record.pending)
        if interrupted:  # the next start takes it up again
            record.status = QUEUED
            persist(self.store, record)
            logger.info("job %s: interrupted by the shutdown; it resumes at the next start", record.id)
        else:
            status = FAILED if error is not None else STOPPED if record.pending and live.stop_asked else DONE
            if status != FAILED:
                try:
                    write_bundles(record, live.thumbnails)
                except OSError as exc:  # the images are saved; only the zip and the sheet are missing
                    logger.error("job %s: could not write its zip and contact sheet: %s", record.id, exc)
            self._finish(record, status, error)
        with self._lock:
            self._ended(record.id)
            self._pump()

    def _progressed(self, live: Live, progress: Progress) -> None:
        live.progress = progress
        self.changes.bump()

    def _ended(self, job_id: str) -> None:
        """The job leaves the queue: waiters and followers hear of it. Under the lock."""
        del self._live[job_id]
        self.changes.bump()
        self._lock.notify_all()

    def _started(self, record: JobRecord) -> None:
        """Its first pipeline call is about to run: from now on a crash counts against it."""
        with self._lock:
            record.status = RUNNING
            record.started = record.started or now_utc()
            self.store.save(record)
        self.changes.bump()

    def _changed(self, live: Live, image: PlannedImage, thumbnail: Image.Image | None) -> None:
        if thumbnail is not None:
            live.thumbnails[image.index] = thumbnail
        with self._lock:
            self.store.save(live.record)
        self.changes.bump()

    def _finish(self, record: JobRecord, status: str, error: str | None) -> None:
        record.status, record.error, record.finished = status, error, now_utc()
        persist(self.store, record)
        logger.info(
            "job %s: %s, %d of %d images in %.1f s%s",
            record.id,
            status,
            len(record.saved),
            len(record.images),
            record.elapsed_s,
            f": {error}" if error else "",
        )
