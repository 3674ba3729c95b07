"""The GPU lane: one worker thread owns the pipeline and packs the work of every request.

Requests arrive as jobs (a list of images still to make). The worker forms each pipeline
call from the oldest job that has work and every job compatible with it (same size, steps,
guidance, negative prompt), taking one image from each in turn, so a short request that
arrives behind a long one gets into the very next call. Every image has its own generator,
so its pixels do not depend on the company it ran in.

Around the transformer, the worker does only what must be serial: prompts are encoded once
per unique text (with a small cache for repeats) and latents are decoded by us (on a GPU
straight to uint8 pixels; on the CPU one image at a time, where that is faster). The rest
(pixels on the CPU, PNG encoding, saving) runs on saver threads while the next call runs.

A watchdog thread notices a call that stops making progress (a hung kernel or driver): no
step finished for `stall_timeout_s`. It fails every request in the lane with a message and
marks the lane stalled; if the call is still stuck a grace period later, nothing in this
process can free the device, so it exits with EXIT_STALLED for Supervisor to start a fresh one.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from webui.loading import LoadedModel
from webui.settings import MODEL_MAX_TOKENS

logger = logging.getLogger(__name__)

# Backends that raise on an attention mask; a mask appears when captions in one call pad to
# different lengths (multiples of 32 tokens), so calls on these hold one caption bucket only.
MASKLESS_BACKENDS = frozenset(
    {"flash", "flash_hub", "_flash_3", "_flash_3_hub", "_native_flash", "sage", "sage_hub"}
)
CAPTION_MULTIPLE = 32
EMBEDDING_CACHE_SIZE = 256  # prompts; about 0.5 MB each for the real model in bf16
# PNG encoding (zlib, GIL released) and saving, in parallel with the next pipeline call.
SAVER_THREADS = max(2, min(8, os.cpu_count() or 2))
EXIT_STALLED = 70  # process exit status after a call that stalled and never came back (EX_SOFTWARE)
STALL_GRACE_MAX_S = 30.0


@dataclass(frozen=True)
class WorkItem:
    """One image to make."""

    index: int  # position in its request, prompt-then-variant order
    prompt_index: int
    variant: int
    prompt: str
    seed: int
    caption_bucket: int  # padded caption length / 32, for mask-free batching


@dataclass(frozen=True)
class Progress:
    """Where a request stands, reported after every denoising step of a call it is in."""

    step: int  # steps finished in the running call, 1..steps
    steps: int
    images_done: int  # the request's images finished before the running call
    chunk_images: int  # the request's images in the running call
    images_total: int

    @property
    def fraction(self) -> float:
        done = self.images_done * self.steps + self.chunk_images * self.step
        return done / (self.images_total * self.steps)


@dataclass(eq=False)
class Job:
    """A request as the lane sees it. The engine creates it, waits on `done`, then on `saves`."""

    request_id: str
    items: list[WorkItem]
    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: str
    on_step: Callable[[Progress], None] | None
    on_image: Callable[[WorkItem, Image.Image], Any]  # runs on a saver thread
    cancel: threading.Event
    pending: deque[WorkItem] = field(init=False)
    forwarded: int = field(default=0, init=False)  # images whose call has finished
    in_flight: int = field(default=0, init=False)
    saves: list[Future] = field(default_factory=list, init=False)
    error: BaseException | None = field(default=None, init=False)
    black: list[int] = field(default_factory=list, init=False)  # seeds of all-black images
    done: threading.Event = field(default_factory=threading.Event, init=False)  # no more calls
    # The submitting thread's context variables (Gradio finds its event through them), so that
    # on_step, called on the lane's thread, behaves as if called by the submitter.
    context: contextvars.Context = field(default_factory=contextvars.copy_context, init=False)

    def __post_init__(self) -> None:
        self.pending = deque(self.items)

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can share a pipeline call."""
        negative = self.negative_prompt if self.guidance_scale > 0 else ""
        return (self.width, self.height, self.steps, self.guidance_scale, negative)

    @property
    def stopped(self) -> bool:
        return self.cancel.is_set()


class Lane:
    """Runs every pipeline call of an engine, one at a time, on one worker thread."""

    def __init__(
        self,
        model: LoadedModel,
        max_batch_size: int,
        cross_batching: bool,
        attention_backend: str,
        stall_timeout_s: float = 300.0,
    ) -> None:
        self.model = model
        self.stall_timeout_s = stall_timeout_s
        self.max_batch_size = max_batch_size
        self.call_limit = max_batch_size  # lowered after an out-of-memory error, until idle
        self.cross_batching = cross_batching
        self.one_bucket = attention_backend in MASKLESS_BACKENDS
        self._jobs: list[Job] = []  # arrival order; those with work pending or in flight
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._savers = ThreadPoolExecutor(SAVER_THREADS, thread_name_prefix="saver")
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.last_step_at: float | None = None  # time.time() of the last finished step
        # time.monotonic() of the running call's start or last finished step; None between calls.
        self._beat: float | None = None
        self._serial = 0  # calls started
        self.stalled = False  # a call stalled: requests are refused until it comes back
        self.calls = 0  # pipeline calls made, for logs and tests

    @property
    def job_count(self) -> int:
        """Requests in the lane: waiting for a call or in one."""
        with self._wake:
            return len(self._jobs)

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._closing:
                raise RuntimeError("the lane is closed")
            if self._thread is None:  # started on first use, never at construction
                self._thread = threading.Thread(target=self._work, name="gpu-lane", daemon=True)
                self._thread.start()
                threading.Thread(target=self._watch, name="gpu-watchdog", daemon=True).start()
            self._jobs.append(job)
            self._wake.notify()

    def withdraw(self, job: Job) -> None:
        """Stop giving `job` work; its images in a running call are dropped when it ends."""
        with self._wake:
            job.pending.clear()
            if job.in_flight == 0:
                self._retire(job)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            for job in self._jobs:
                job.cancel.set()
                job.pending.clear()
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                batch = self._next_batch()
                while batch is None:
                    if self._closing:
                        return
                    self._wake.wait()
                    batch = self._next_batch()
                for job, _ in batch:
                    job.in_flight += 1
                self._beat = time.monotonic()
                self._serial += 1
            try:
                self._run(batch)
            finally:
                with self._wake:
                    self._beat = None

    def quiet_for(self) -> float:
        """Seconds the running call has gone without progress; 0 between calls."""
        beat = self._beat
        return 0.0 if beat is None else time.monotonic() - beat

    def _watch(self) -> None:
        """The watchdog: fail everything on a stalled call; exit if it never comes back."""
        timeout = self.stall_timeout_s
        while not self._closing:
            time.sleep(min(1.0, timeout / 4))
            if self.quiet_for() < timeout:
                continue
            grace = min(STALL_GRACE_MAX_S, timeout)
            logger.error(
                "The pipeline call has made no progress for %.0f s: failing every request "
                "and refusing new ones",
                self.quiet_for(),
            )
            self._fail_all(
                Stalled(
                    f"Stopped: the GPU made no progress for {timeout:g} s (a stalled call). The server "
                    "restarts itself if the device does not recover; try again in a minute."
                )
            )
            stuck, deadline = self._serial, time.monotonic() + grace
            while self._serial == stuck and self._beat is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._serial != stuck or self._beat is None:
                logger.warning("The stalled call came back after all; serving again")
                self.stalled = False
                continue
            logger.critical(
                "The call is still stuck %.0f s later: exiting with status %d so that "
                "Supervisor starts a fresh process",
                grace,
                EXIT_STALLED,
            )
            logging.shutdown()  # flush the log: os._exit skips it
            os._exit(EXIT_STALLED)  # the stuck thread cannot be interrupted; exit() would wait on it

    def _fail_all(self, error: Exception) -> None:
        with self._wake:
            self.stalled = True
            for job in self._jobs:
                job.error = error
                job.cancel.set()  # images of the stuck call, should it return, are dropped
                job.pending.clear()
                job.done.set()
            self._jobs.clear()

    def _next_batch(self) -> list[tuple[Job, WorkItem]] | None:
        """Items for the next call: the oldest job's kind, one from each such job in turn."""
        head = next((job for job in self._jobs if job.pending), None)
        if head is None:
            return None
        peers = [j for j in self._jobs if j.pending and j.key == head.key] if self.cross_batching else [head]
        bucket = head.pending[0].caption_bucket
        batch: list[tuple[Job, WorkItem]] = []
        while len(batch) < self.call_limit:
            took = False
            for job in peers:
                if len(batch) == self.call_limit:
                    break  # before taking: an item taken must go into the call
                item = self._take(job, bucket)
                if item is not None:
                    batch.append((job, item))
                    took = True
            if not took:
                break
        return batch

    def _take(self, job: Job, bucket: int) -> WorkItem | None:
        if not self.one_bucket:
            return job.pending.popleft() if job.pending else None
        for item in job.pending:
            if item.caption_bucket == bucket:
                job.pending.remove(item)
                return item
        return None

    def _run(self, batch: list[tuple[Job, WorkItem]]) -> None:
        shares = Counter(job for job, _ in batch)  # images per job in this call, in batch order
        started = time.monotonic()
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
                    f"Out of memory even for one {first.width}x{first.height} image (calls were cut down "
                    f"from {self.max_batch_size} images). Lower the size, or an admin can lower "
                    f"ZIMAGE_MAX_BATCH_SIZE or free memory on the device."
                ),
            )
            logger.error("Out of memory in a call of one image (%s)", first.request_id)
            release_memory(self.model.device)
        except Exception as exc:  # the calling requests report it; the lane keeps serving
            logger.exception("Pipeline call for %d images failed", len(batch))
            images, error = None, exc
        else:
            error = None
            served = ", ".join(f"{job.request_id} x{n}" for job, n in shares.items())
            logger.info(
                "call of %d images (%s) in %.2f s%s (%s)",
                len(batch),
                served,
                time.monotonic() - started,
                "" if images else ", stopped",
                self.model.label,
            )
        with self._wake:
            for job, n in shares.items():
                job.forwarded += n
            if error is not None:
                for job in shares:
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
        release_memory(self.model.device)

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
            job.black.append(item.seed)
            return None
        return job.on_image(item, Image.fromarray(pixels.numpy()))

    def _forward(self, batch: list[tuple[Job, WorkItem]], shares: Counter[Job]) -> list[torch.Tensor] | None:
        """One pipeline call; uint8 HWC images on the CPU, or None if every job stopped."""
        pipe, first = self.model.pipe, batch[0][0]
        if all(job.stopped for job in shares) or self._closing:
            return None
        prompts = [item.prompt for _, item in batch]
        embeds = self._embed(prompts)
        negative = self._embed([first.negative_prompt] * len(batch)) if first.guidance_scale > 0 else None
        generators = [torch.Generator(device=self.model.device).manual_seed(i.seed) for _, i in batch]
        watcher = _Watcher(self, shares, first.steps)
        output = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
            generator=generators,
            max_sequence_length=MODEL_MAX_TOKENS,
            callback_on_step_end=watcher,
            output_type="latent",
        )
        self.calls += 1
        if watcher.interrupted:
            return None  # partly denoised: nothing to decode
        return self._decode(output.images)

    def _embed(self, prompts: list[str]) -> list[torch.Tensor]:
        """Text-encoder output per prompt; each unique text encoded once, recent ones cached."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._embeddings))
        if missing:
            pipe = self.model.pipe
            # A fresh list: _encode_prompt overwrites its argument with templated text.
            encoded, _ = pipe.encode_prompt(
                prompt=list(missing),
                device=self.model.device,
                do_classifier_free_guidance=False,
                max_sequence_length=MODEL_MAX_TOKENS,
            )
            for text, embedding in zip(missing, encoded, strict=True):
                self._embeddings[text] = embedding
        for text in prompts:
            self._embeddings.move_to_end(text)
        result = [self._embeddings[p] for p in prompts]
        while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
            self._embeddings.popitem(last=False)
        return result

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """VAE output per image: uint8 HWC pixels on a GPU; on the CPU, the float decoder output.

        On a GPU the conversion to pixels is GPU work and shrinks the copy to the CPU fourfold.
        On the CPU it is CPU work either way, so it moves to the saver threads, off the lane.
        """
        vae = self.model.pipe.vae
        latents = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        if self.model.device.type == "cpu":
            # Measured on the demo model: one at a time beats one batched decode on CPU.
            return [vae.decode(z[None], return_dict=False)[0][0] for z in latents]
        return list(to_pixels(vae.decode(latents, return_dict=False)[0]).cpu())


class LaneError(RuntimeError):
    """A failure of the lane itself, with a message for the user."""


class OutOfMemory(LaneError):
    """Even a call of one image ran out of memory; the message says what to lower."""


class Stalled(LaneError):
    """The running call stopped making progress; every request in the lane gets this."""


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def to_pixels(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1], CHW or NCHW, to contiguous uint8 HWC / NHWC pixels.

    The same values as diffusers' postprocess then numpy_to_pil (denormalize, clamp to
    0..1, times 255, round), in fewer passes over the data.
    """
    pixels = decoded.float().mul(0.5).add_(0.5).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return pixels.movedim(-3, -1).contiguous()


class _Watcher:
    """The step-end callback of one call: progress for each job, and the interrupt flag."""

    def __init__(self, lane: Lane, shares: Counter[Job], steps: int) -> None:
        self.lane, self.shares, self.steps = lane, shares, steps
        self.interrupted = False

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        self.lane.last_step_at = time.time()
        self.lane._beat = time.monotonic()
        for job, share in self.shares.items():
            if job.on_step is not None and not job.stopped:
                report = Progress(step + 1, self.steps, job.forwarded, share, len(job.items))
                job.context.run(job.on_step, report)
        # Checked last, so a stop raised while reporting still spares the next step. Only when
        # every job in the call has stopped: the others' images must not suffer.
        everyone_stopped = self.lane._closing or all(job.stopped for job in self.shares)
        if step + 1 < self.steps and everyone_stopped:
            pipe._interrupt = True  # diffusers checks this before each step
            self.interrupted = True
        return tensors
