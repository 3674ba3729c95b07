"""The lane's worker: one thread owns the pipeline and packs the work of every job.

Jobs arrive as lists of images still to make. Before each pipeline call the lane asks the
packing policy (packing.py) which images go in, so a short job that arrives behind a
long one gets into the very next call. Every image has its own generator, so its pixels do
not depend on the company it ran in. The torch work of a call is calls.py; turning
CPU output into pixels, PNG encoding and saving run on saver threads while the next call
runs (settle.py). A watchdog (watchdog.py) fails the lane's jobs when a call stalls. On a GPU, a second
thread encodes the prompts of the next call while a call runs, so that the next call starts
with its embeddings ready (calls.py's prefetch).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from webui.lane.calls import PipelineCalls
from webui.lane.packing import Waiting, next_call
from webui.lane.settle import Settling
from webui.lane.watchdog import start_watchdog
from webui.lane.work import CallStats, Job, LoggedCall, OutOfMemory, Progress, Stalled, WorkItem
from webui.loading import LoadedModel
from webui.loras import LoraLibrary

logger = logging.getLogger(__name__)

# Backends that raise on an attention mask; a mask appears when captions in one call pad to
# different lengths (multiples of 32 tokens), so calls on these hold one caption bucket only.
MASKLESS_BACKENDS = frozenset(
    {"flash", "flash_hub", "_flash_3", "_flash_3_hub", "_native_flash", "sage", "sage_hub"}
)
# PNG encoding (zlib, GIL released) and saving, in parallel with the next pipeline call.
SAVER_THREADS = max(2, min(8, os.cpu_count() or 2))


class Lane(Settling):
    """Runs every pipeline call of an engine, one at a time, on one worker thread."""

    def __init__(
        self,
        model: LoadedModel,
        max_batch_size: int,
        cross_batching: bool,
        attention_backend: str,
        stall_timeout_s: float = 300.0,
        on_stuck: Callable[[], None] | None = None,
        vae_tiling_above: float = 1.5,
        prefetch: bool = False,
        loras: LoraLibrary | None = None,
        loras_kept: int = 8,
    ) -> None:
        """`prefetch`: encode the next call's prompts on a thread of its own while a call runs."""
        self.model = model
        self.prefetch = prefetch
        self.stall_timeout_s, self.on_stuck = stall_timeout_s, on_stuck
        self.max_batch_size = max_batch_size
        self.call_limit = max_batch_size  # lowered after an out-of-memory error, until idle
        self.cross_batching = cross_batching
        self.one_bucket = attention_backend in MASKLESS_BACKENDS
        self.calls = PipelineCalls(model, vae_tiling_above, loras, loras_kept)
        self._backlog_since: float | None = None  # the last call's end, if work was waiting then
        self._prefetch_wanted = threading.Event()
        # Once a call's own prompts are encoded, the next call's may be (the encoder thread).
        self.calls.on_embedded = self._prefetch_wanted.set
        self.stats = CallStats()
        self.closing = False
        self.paused = False  # no call starts while set (the queue paused); the running one ends
        self.stalled = False  # a call stalled: jobs are refused until it comes back
        self.calls_started = 0
        self.last_step_at: float | None = None  # time.time() of the last finished step
        self._jobs: list[Job] = []  # queue order; those with work pending or in flight
        self._order: dict[str, int] = {}  # job id -> place, once an admin reordered the queue
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._savers = ThreadPoolExecutor(SAVER_THREADS, thread_name_prefix="saver")
        # time.monotonic() of the running call's start or last finished step; None between calls.
        self._beat: float | None = None

    @property
    def job_count(self) -> int:
        """Jobs in the lane: waiting for a call or in one."""
        with self._wake:
            return len(self._jobs)

    def submit(self, job: Job) -> None:
        with self._wake:
            if self.closing:
                raise RuntimeError("the lane is closed")
            if self._thread is None:  # started on first use, never at construction
                self._thread = threading.Thread(target=self._work, name="gpu-lane", daemon=True)
                self._thread.start()
                start_watchdog(self, self.stall_timeout_s, self.on_stuck)
                if self.prefetch:
                    threading.Thread(target=self._prefetch, name="prompt-encoder", daemon=True).start()
            self._jobs.append(job)
            self._sort()
            self._wake.notify()
        self._prefetch_wanted.set()  # it may go into the next call

    def withdraw(self, job: Job) -> None:
        """Stop giving `job` work; its images in a running call are dropped when it ends."""
        with self._wake:
            job.pending.clear()
            if job.in_flight == 0:
                self._retire(job)

    @property
    def call_running(self) -> bool:
        """A pipeline call is running now."""
        return self._beat is not None

    def pause(self, paused: bool) -> None:
        """Start no call while paused (the running call finishes); go on when not."""
        with self._wake:
            self.paused = paused
            self._wake.notify()

    def reorder(self, job_ids: list[str]) -> None:
        """Jobs take the order of `job_ids` (their ids, as the queue has them now), those in the
        lane at once and those that arrive later; the next call follows it."""
        with self._wake:
            self._order = {job_id: n for n, job_id in enumerate(job_ids)}
            self._sort()
        self._prefetch_wanted.set()

    def _sort(self) -> None:
        """Under _wake: the queue's order, if it was given; arrival order otherwise."""
        if self._order:
            self._jobs.sort(key=lambda job: self._order.get(job.request_id, len(self._order)))

    def close(self) -> None:
        with self._wake:
            self.closing = True
            for job in self._jobs:
                job.cancel.set()
                job.pending.clear()
            self._wake.notify()
        self._prefetch_wanted.set()  # the encoder thread ends

    def beat(self) -> None:
        """A step finished: the running call is alive."""
        self.last_step_at, self._beat = time.time(), time.monotonic()

    def quiet_for(self) -> float:
        """Seconds the running call has gone without progress; 0 between calls."""
        beat = self._beat
        return 0.0 if beat is None else time.monotonic() - beat

    def fail_all(self, message: str) -> None:
        """The watchdog's verdict: every job fails with `message`; new ones are refused."""
        with self._wake:
            self.stalled = True
            for job in self._jobs:
                job.error = Stalled(message)
                job.cancel.set()  # images of the stuck call, should it return, are dropped
                job.pending.clear()
                job.done.set()
            self._jobs.clear()

    def recovered(self) -> None:
        self.stalled = False

    def _work(self) -> None:
        while True:
            with self._wake:
                batch = [] if self.paused else self._next_batch()
                while not batch:
                    if self.closing:
                        return
                    self._wake.wait()
                    batch = [] if self.paused else self._next_batch()
                for job, _ in batch:
                    job.in_flight += 1
                self._beat = time.monotonic()
                self.calls_started += 1
            try:
                self._run(batch)
            finally:
                with self._wake:
                    self._beat = None
                    last, waiting = self.calls.last, any(job.pending for job in self._jobs)
                    self._backlog_since = last.ended if last and waiting else None

    def _next_batch(self, take: bool = True) -> list[tuple[Job, WorkItem]]:
        """The next call's images (under _wake), taken out of their jobs unless `take` is False."""
        waiting = [Waiting(job.key, [item.caption_bucket for item in job.pending]) for job in self._jobs]
        picks = next_call(waiting, self.call_limit, self.cross_batching, self.one_bucket)
        batch = [(self._jobs[n], self._jobs[n].pending[i]) for n, i in picks]
        for job, item in batch if take else ():
            job.pending.remove(item)
        return batch

    def _prefetch(self) -> None:
        """The encoder thread: whenever a call starts or a job arrives, the prompts of the call
        that would come next are encoded (a no-op for those already cached)."""
        while True:
            self._prefetch_wanted.wait()
            self._prefetch_wanted.clear()
            with self._wake:
                if self.closing:
                    return
                prompts = [item.prompt for _, item in self._next_batch(take=False)]
            if prompts:
                try:
                    self.calls.prefetch(prompts)
                except Exception:  # the lane encodes them itself, and reports what fails then
                    logger.exception("Encoding the next call's prompts ahead failed")

    def _run(self, batch: list[tuple[Job, WorkItem]]) -> None:
        shares = Counter(job for job, _ in batch)  # images per job in this call, in batch order
        started = time.monotonic()
        for job in shares:
            if not job.started:
                job.started = True
                if job.on_start is not None:
                    job.on_start()  # before the call: if it kills the process, the job knows it ran
        try:
            images = self._forward(batch, shares)
        except (torch.OutOfMemoryError, MemoryError):
            if len(batch) > 1:
                self._retry_smaller(batch, shares)
                return
            first = batch[0][0]
            images, error = (
                None,
                OutOfMemory(
                    f"Out of memory even for one {first.shape.width}x{first.shape.height} image (calls were "
                    f"cut down from {self.max_batch_size} images). Lower the size, or an admin can lower "
                    f"ZIMAGE_MAX_BATCH_SIZE or free memory on the device."
                ),
            )
            logger.error("Out of memory in a call of one image (%s)", first.request_id)
            self.calls.release_memory()
        except Exception as exc:  # the calling jobs report it; the lane keeps serving
            logger.exception("Pipeline call for %d images failed", len(batch))
            images, error = None, exc
        else:
            error, ended = None, time.monotonic()
            seconds = ended - started
            self._count(batch, seconds, complete=images is not None)
            served = tuple((job.request_id, n) for job, n in shares.items())
            self.stats.log.append(LoggedCall(started, ended, served))
            served = ", ".join(f"{job.request_id} x{n}" for job, n in shares.items())
            stopped = "" if images else ", stopped"
            logger.info(
                "call of %d images (%s) in %.2f s%s (%s)",
                len(batch),
                served,
                seconds,
                stopped,
                self.model.label,
            )
        self._settle(batch, shares, images, error)

    def _forward(self, batch: list[tuple[Job, WorkItem]], shares: Counter[Job]) -> list[torch.Tensor] | None:
        """One pipeline call, or None if every job in it stopped (before or during it)."""
        if all(job.stopped for job in shares) or self.closing:
            return None
        steps = batch[0][0].shape.steps_run

        def on_step(step: int) -> bool:
            self.beat()
            for job, share in shares.items():
                if job.on_step is not None and not job.stopped:
                    job.on_step(Progress(step, steps, job.forwarded, share, len(job.items)))
            # Checked last, so a stop raised while reporting still spares the next step. Only when
            # every job in the call has stopped: the others' images must not suffer.
            return self.closing or all(job.stopped for job in shares)

        prompts, seeds = [i.prompt for _, i in batch], [i.seed for _, i in batch]
        starts = [i.start for _, i in batch]
        return self.calls.run(prompts, seeds, batch[0][0].shape, on_step, starts)
