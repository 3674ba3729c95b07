"""The generation engine: a list of prompts in, images on disk out, on one shared pipeline.

The engine validates a request before any work, gives every image its own seed and noise
generator, runs the images in chunks of at most `max_batch_size` per pipeline call, reports
per-step progress, stops at the next step when cancelled (keeping finished images), and
writes each chunk's PNGs as soon as the chunk is done. It knows nothing about Gradio.

The pipeline keeps per-call state on itself and its scheduler, so every call goes through
one lock: the lane.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from webui.loading import LoadedModel
from webui.outputs import image_stem, request_dir, save_png
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_SEED,
    MODEL_MAX_TOKENS,
    RANDOM_SEED_RANGE,
    SIZE_MULTIPLE,
    Settings,
)

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """The request cannot run as asked; the message names the limit or the fix."""


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Image k (prompt-then-variant order) gets seed `seed + k`."""

    prompts: Sequence[str]  # already parsed: one prompt per item
    images_per_prompt: int = 1  # variants of each prompt
    seed: int = -1  # base seed; -1 picks a random one
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE  # the negative prompt is used only above 0
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        # A tuple: nothing downstream (the pipeline rewrites lists in place) can change it.
        object.__setattr__(self, "prompts", tuple(self.prompts))

    @property
    def image_count(self) -> int:
        return len(self.prompts) * self.images_per_prompt


@dataclass(frozen=True)
class Progress:
    """Where a request stands, reported after every denoising step."""

    step: int  # steps finished in the running chunk, 1..steps
    steps: int
    images_done: int  # images finished before the running chunk
    chunk_images: int  # images in the running chunk
    images_total: int

    @property
    def fraction(self) -> float:
        done = self.images_done * self.steps + self.chunk_images * self.step
        return done / (self.images_total * self.steps)


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image
    index: int  # position in prompt-then-variant order, from 0
    prompt_index: int
    variant: int
    prompt: str
    seed: int
    path: Path


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    request: GenerationRequest
    seeds: tuple[int, ...]  # one per planned image, in order, made or not
    images: tuple[GeneratedImage, ...]  # the finished ones, in order
    cancelled: bool
    elapsed_s: float
    model_label: str
    is_demo: bool
    output_dir: Path

    @property
    def base_seed(self) -> int:
        return self.seeds[0]


@dataclass(frozen=True)
class _Item:
    index: int
    prompt_index: int
    variant: int
    prompt: str
    seed: int


@dataclass
class _StepWatcher:
    """The pipeline's step-end callback: reports progress and raises the interrupt flag."""

    steps: int
    images_done: int
    chunk_images: int
    images_total: int
    on_progress: Callable[[Progress], None] | None
    should_stop: Callable[[], bool]
    on_step: Callable[[], None]
    interrupted: bool = field(default=False, init=False)

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        self.on_step()
        if self.on_progress is not None:
            self.on_progress(
                Progress(step + 1, self.steps, self.images_done, self.chunk_images, self.images_total)
            )
        # Checked last, so a cancel raised while reporting still stops the next step. A cancel
        # after the last step changes nothing: those images are complete.
        if step + 1 < self.steps and self.should_stop():
            pipe._interrupt = True  # diffusers checks this before each step
            self.interrupted = True
        return tensors


class Engine:
    """Runs generation requests on one loaded pipeline, one pipeline call at a time."""

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self._lane = threading.Lock()
        self._closing = threading.Event()
        self._active = 0  # requests inside generate(), guarded by _count_lock
        self._count_lock = threading.Lock()
        self.last_progress_at: float | None = None  # time.time() of the last finished step

    @property
    def busy(self) -> bool:
        """Whether a request is being generated now."""
        return self._active > 0

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Shut down: running requests stop at their next step, new ones are refused."""
        if not self._closing.is_set():
            logger.info("Engine closing: stopping running requests at the next step")
        self._closing.set()

    def count_tokens(self, prompt: str) -> int:
        """Tokens the text encoder sees for `prompt`, chat template included."""
        tokenizer = self.model.pipe.tokenizer
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=True,
        )
        return len(tokenizer(text)["input_ids"])

    def validate(self, request: GenerationRequest) -> None:
        """Raise RequestError if the request breaks a limit; does no GPU work."""
        s = self.settings
        if not request.prompts:
            raise RequestError(
                "No prompts: type at least one prompt, one per line "
                "(blank lines and lines starting with # are skipped)."
            )
        if len(request.prompts) > s.max_prompts:
            raise RequestError(
                f"Too many prompts: {len(request.prompts)} (the limit is {s.max_prompts} per request)."
            )
        _check_int("Images per prompt", request.images_per_prompt, 1, s.max_images)
        if request.image_count > s.max_images:
            raise RequestError(
                f"Too many images: {len(request.prompts)} prompts x {request.images_per_prompt} "
                f"= {request.image_count} (the limit is {s.max_images} per request)."
            )
        for name, value in (("Width", request.width), ("Height", request.height)):
            _check_int(name, value, s.min_size, s.max_size)
            if value % SIZE_MULTIPLE:
                lower = value - value % SIZE_MULTIPLE
                raise RequestError(
                    f"{name} must be a multiple of {SIZE_MULTIPLE} (got {value}; "
                    f"try {lower} or {lower + SIZE_MULTIPLE})."
                )
        _check_int("Steps", request.steps, s.min_steps, s.max_steps)
        guidance = request.guidance_scale
        if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not (
            math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE
        ):
            raise RequestError(f"Guidance scale must be between 0 and {MAX_GUIDANCE:g} (got {guidance!r}).")
        if request.seed != -1:
            _check_int("Seed", request.seed, 0, MAX_SEED - request.image_count + 1, "-1 (random) or ")
        limit = min(s.max_prompt_tokens, MODEL_MAX_TOKENS)
        texts = [(f"Prompt {i}", p) for i, p in enumerate(request.prompts, 1)]
        if guidance > 0:
            texts.append(("The negative prompt", request.negative_prompt))
        for name, text in texts:
            if not isinstance(text, str):
                raise RequestError(f"{name} must be text (got {type(text).__name__}).")
            if name.startswith("Prompt") and not text.strip():
                raise RequestError(f"{name} is empty.")
            tokens = self.count_tokens(text)
            if tokens > limit:
                raise RequestError(
                    f"{name} is {tokens} tokens long; the limit is {limit} tokens "
                    f"(counted with the chat template). Shorten it by {tokens - limit} tokens."
                )

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        output_dir: Path | None = None,
    ) -> GenerationResult:
        """Validate, then generate every image of `request`, saving PNGs as chunks finish.

        `output_dir` defaults to a new folder per request under the output setting. If
        `cancel` is set, the running chunk stops at its next step and is discarded; the
        images of earlier chunks are kept and returned with `cancelled=True`.
        """
        self.validate(request)
        if self.closing:
            raise RequestError("The server is shutting down; try again in a minute.")
        with self._count_lock:
            self._active += 1
        try:
            return self._generate(request, on_progress, cancel, output_dir)
        finally:
            with self._count_lock:
                self._active -= 1

    def _generate(
        self,
        request: GenerationRequest,
        on_progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
        output_dir: Path | None,
    ) -> GenerationResult:
        started = time.monotonic()
        request_id = uuid.uuid4().hex[:8]
        base = request.seed if request.seed != -1 else secrets.randbelow(RANDOM_SEED_RANGE)
        items = [
            _Item(k, k // request.images_per_prompt, k % request.images_per_prompt,
                  request.prompts[k // request.images_per_prompt], base + k)
            for k in range(request.image_count)
        ]  # fmt: skip
        # Absolute, so that paths reported to clients mean something outside this process.
        folder = output_dir or request_dir(self.settings.output_dir.resolve(), request_id, datetime.now())
        label = self.model.label
        logger.info(
            "request %s: %d prompts x %d = %d images, %dx%d, %d steps, guidance %g, "
            "seeds %d..%d, %s",
            request_id, len(request.prompts), request.images_per_prompt, len(items),
            request.width, request.height, request.steps, request.guidance_scale,
            base, base + len(items) - 1, label,
        )  # fmt: skip

        def should_stop() -> bool:
            return self._closing.is_set() or (cancel is not None and cancel.is_set())

        finished: list[GeneratedImage] = []
        cancelled = False
        batch = self.settings.max_batch_size
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            watcher = _StepWatcher(
                request.steps, len(finished), len(chunk), len(items), on_progress, should_stop,
                self._record_step,
            )  # fmt: skip
            chunk_started = time.monotonic()
            images = self._run_chunk(request, chunk, watcher)
            if images is None or watcher.interrupted:
                cancelled = True
                break
            for item, image in zip(chunk, images, strict=True):
                finished.append(self._save(request, request_id, item, image, folder))
            logger.info(
                "request %s: images %d-%d of %d in %.2f s (%s)",
                request_id, start + 1, start + len(chunk), len(items),
                time.monotonic() - chunk_started, label,
            )  # fmt: skip

        elapsed = time.monotonic() - started
        logger.info(
            "request %s: %s, %d of %d images in %.2f s (%s)",
            request_id, "cancelled" if cancelled else "done", len(finished), len(items), elapsed,
            label,
        )  # fmt: skip
        return GenerationResult(
            request_id=request_id,
            request=request,
            seeds=tuple(item.seed for item in items),
            images=tuple(finished),
            cancelled=cancelled,
            elapsed_s=elapsed,
            model_label=label,
            is_demo=self.model.is_demo,
            output_dir=folder,
        )

    def _run_chunk(
        self, request: GenerationRequest, chunk: list[_Item], watcher: _StepWatcher
    ) -> list[Image.Image] | None:
        """One pipeline call for `chunk`; None if cancelled before it started."""
        use_negative = request.guidance_scale > 0 and request.negative_prompt
        with self._lane:
            if watcher.should_stop():
                return None
            generators = [
                torch.Generator(device=self.model.device).manual_seed(item.seed) for item in chunk
            ]
            output = self.model.pipe(
                # A fresh list: the pipeline overwrites its prompt list with templated text.
                prompt=[item.prompt for item in chunk],
                negative_prompt=[request.negative_prompt] * len(chunk) if use_negative else None,
                height=request.height,
                width=request.width,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                generator=generators,
                max_sequence_length=MODEL_MAX_TOKENS,
                callback_on_step_end=watcher,
            )
        return list(output.images)

    def _record_step(self) -> None:
        self.last_progress_at = time.time()

    def _save(
        self, request: GenerationRequest, request_id: str, item: _Item, image: Image.Image,
        folder: Path,
    ) -> GeneratedImage:  # fmt: skip
        parameters: dict[str, Any] = {
            "prompt": item.prompt,
            "seed": item.seed,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "model": self.model.label,
            "request_id": request_id,
            "index": item.index,
        }
        if request.guidance_scale > 0 and request.negative_prompt:
            parameters["negative_prompt"] = request.negative_prompt
        path = save_png(image, folder, image_stem(item.index + 1, item.prompt, item.seed), parameters)
        return GeneratedImage(image, item.index, item.prompt_index, item.variant, item.prompt, item.seed, path)


def _check_int(name: str, value: Any, low: int, high: int, also: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be {also}a whole number from {low} to {high} (got {value!r}).")
