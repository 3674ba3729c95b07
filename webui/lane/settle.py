"""What the lane does after each pipeline call (webui/lane/worker.py's Lane mixes it in): the
call counted in the stats, its images handed to the saver threads (black ones are not saved),
jobs with nothing left retired, and after an out-of-memory error the images put back for
calls half as big."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from PIL import Image

from webui.lane.calls import PipelineCalls, to_pixels
from webui.lane.work import CallStats, Job, WorkItem

logger = logging.getLogger(__name__)


class Settling:
    """The end of a call; it uses the lane's lock, its jobs, stats, calls and saver threads."""

    max_batch_size: int
    call_limit: int
    calls: PipelineCalls
    stats: CallStats
    _wake: threading.Condition
    _jobs: list[Job]
    _backlog_since: float | None
    _savers: ThreadPoolExecutor

    def _count(self, batch: list[tuple[Job, WorkItem]], seconds: float, complete: bool) -> None:
        stats = self.stats
        stats.calls += 1
        stats.busy_s += seconds
        timing, since, gap = self.calls.last, self._backlog_since, None
        if timing is not None and since is not None and timing.entered >= since:
            stats.gaps.append((timing.entered - since, timing.denoising - timing.entered))
            gap = timing.denoising - since
        if complete:  # a stopped call's time says nothing about speed
            stats.images += len(batch)
            stats.recent.append((len(batch) * batch[0][0].shape.units, seconds))
            for observe in stats.observers:
                observe(batch[0][0].shape, len(batch), seconds, gap)

    def _settle(
        self,
        batch: list[tuple[Job, WorkItem]],
        shares: Counter[Job],
        images: list[torch.Tensor] | None,
        error: BaseException | None,
    ) -> None:
        """After a call: saves go to the saver threads, and finished jobs leave the lane."""
        with self._wake:
            for job, n in shares.items():
                job.forwarded += n
                if error is not None:
                    job.error = error
                    job.pending.clear()
            for (job, item), image in zip(batch, images or [None] * len(batch), strict=True):
                if image is not None and not job.stopped:
                    job.saves.append(self._savers.submit(self._save, job, item, image))
            for job, n in shares.items():
                job.in_flight -= n
                if job.in_flight == 0 and (not job.pending or job.stopped or job.error):
                    self._retire(job)

    def _retry_smaller(self, batch: list[tuple[Job, WorkItem]], shares: Counter[Job]) -> None:
        """After an out-of-memory error: the items go back, and calls hold half as many."""
        with self._wake:
            self.call_limit = max(1, len(batch) // 2)
            for job, item in reversed(batch):
                if not job.stopped:
                    job.pending.appendleft(item)
            for job, n in shares.items():
                job.in_flight -= n
                if job.in_flight == 0 and not job.pending:
                    self._retire(job)
        logger.warning(
            "Out of memory in a call of %d images; retrying in calls of at most %d",
            len(batch),
            self.call_limit,
        )
        self.calls.release_memory()

    def _retire(self, job: Job) -> None:
        """No call will include `job` again; its saves may still be running."""
        if job in self._jobs:
            self._jobs.remove(job)
        if not self._jobs:
            self.call_limit = self.max_batch_size  # idle: memory pressure may have passed
        job.done.set()

    @staticmethod
    def _save(job: Job, item: WorkItem, decoded: torch.Tensor) -> Any:
        """The image's on_image result, or None for an all-black image, which is not saved."""
        pixels = decoded if decoded.dtype == torch.uint8 else to_pixels(decoded)
        if not pixels.any():  # NaN in the model's output also ends up as 0 here
            logger.warning(
                "request %s: image %d (seed %d) came out black; not saved",
                job.request_id,
                item.index + 1,
                item.seed,
            )
            job.black.append(item.index)
            return None
        return job.on_image(item, Image.fromarray(pixels.numpy()))
