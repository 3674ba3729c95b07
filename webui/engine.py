"""The generation engine: a list of prompts in, images on disk out, on one shared pipeline.

The engine validates a request before any work, gives every image its own seed, hands the
images to the lane (webui/lane.py), which makes all pipeline calls on one thread, at most
`max_batch_size` images each and possibly shared with other requests, reports per-step
progress, stops at the next step when cancelled (keeping finished images), and writes PNGs as
soon as their call is done. It knows nothing about Gradio.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from webui.lane import CAPTION_MULTIPLE, Job, Lane, LaneError, Progress, WorkItem
from webui.loading import LoadedModel
from webui.outputs import MANIFEST_NAME, image_stem, request_dir, save_png, write_manifest
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MODEL_MAX_TOKENS,
    RANDOM_SEED_RANGE,
    SEED_PER_IMAGE,
    SEED_PER_VARIANT,
    SEED_POLICIES,
    SIZE_MULTIPLE,
    Settings,
)

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """The request cannot run as asked; the message names the limit or the fix."""


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate, in prompt-then-variant order; seeds as `seed_policy` says."""

    prompts: Sequence[str]  # already parsed: one prompt per item
    images_per_prompt: int = 1  # variants of each prompt
    seed: int = -1  # base seed; -1 picks a random one
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE  # the negative prompt is used only above 0
    negative_prompt: str = ""
    style: str = ""  # appended to every prompt after ", "
    seed_policy: str = SEED_PER_IMAGE

    def __post_init__(self) -> None:
        # A tuple: nothing downstream (the pipeline rewrites lists in place) can change it.
        object.__setattr__(self, "prompts", tuple(self.prompts))

    @property
    def image_count(self) -> int:
        return len(self.prompts) * self.images_per_prompt

    def seed_offset(self, k: int) -> int:
        """Image k's seed minus the base seed."""
        return k % self.images_per_prompt if self.seed_policy == SEED_PER_VARIANT else k

    def text_of(self, prompt: str) -> str:
        """What the model reads for `prompt`: the prompt, then the shared style."""
        return f"{prompt}, {self.style}" if self.style.strip() else prompt


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
    black_seeds: tuple[int, ...] = ()  # images that came out black (NaN): not saved, not in images

    @property
    def base_seed(self) -> int:
        return self.seeds[0]


class Engine:
    """Runs generation requests on one loaded pipeline through one lane."""

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self.lane = Lane(
            model,
            settings.max_batch_size,
            settings.cross_batching,
            settings.attention_backend,
            settings.stall_timeout,
        )
        self._closing = threading.Event()
        self._active = 0  # requests inside generate(), guarded by _count_lock
        self._count_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Whether a request is being generated now."""
        return self._active > 0

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    @property
    def stalled(self) -> bool:
        """A pipeline call stopped making progress and has not come back."""
        return self.lane.stalled

    @property
    def last_progress_at(self) -> float | None:
        """time.time() of the last finished denoising step, if any."""
        return self.lane.last_step_at

    def close(self) -> None:
        """Shut down: running requests stop at their next step, new ones are refused."""
        if not self._closing.is_set():
            logger.info("Engine closing: stopping running requests at the next step")
        self._closing.set()
        self.lane.close()

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

    def validate(self, request: GenerationRequest) -> dict[str, int]:
        """Raise RequestError if the request breaks a limit; does no GPU work.

        Returns the token count of each distinct text checked (chat template included).
        """
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
        if (
            not isinstance(guidance, (int, float))
            or isinstance(guidance, bool)
            or not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE)
        ):
            raise RequestError(f"Guidance scale must be between 0 and {MAX_GUIDANCE:g} (got {guidance!r}).")
        if request.seed_policy not in SEED_POLICIES:
            raise RequestError(
                f"Seed policy must be one of {', '.join(SEED_POLICIES)} (got {request.seed_policy!r})."
            )
        if request.seed != -1:
            highest = request.seed_offset(request.image_count - 1)  # the last image's, either policy
            _check_int("Seed", request.seed, 0, MAX_SEED - highest, "-1 (random) or ")
        limit = min(s.max_prompt_tokens, MODEL_MAX_TOKENS)
        # The style alone first, so that a fault in it is named as the style's.
        texts = [("The style", request.style)] if request.style else []
        texts += [(f"Prompt {i}", p) for i, p in enumerate(request.prompts, 1)]
        if guidance > 0:
            texts.append(("The negative prompt", request.negative_prompt))
        counts: dict[str, int] = {}
        for name, text in texts:
            if not isinstance(text, str):
                raise RequestError(f"{name} must be text (got {type(text).__name__}).")
            if name.startswith("Prompt"):
                if not text.strip():
                    raise RequestError(f"{name} is empty.")
                text = request.text_of(text)  # what the model reads: limits hold for it
            if len(text) > MAX_PROMPT_CHARS:
                raise RequestError(
                    f"{name} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
                    f"characters (and {limit} tokens)."
                )
            bad = next((c for c in text if _is_control(c)), None)
            if bad is not None:
                raise RequestError(
                    f"{name} contains a control character or non-text byte (U+{ord(bad):04X} at "
                    f"character {text.index(bad) + 1}); prompts must be plain text."
                )
            if text not in counts:
                counts[text] = self.count_tokens(text)
            tokens = counts[text]
            if tokens > limit:
                raise RequestError(
                    f"{name} is {tokens} tokens long; the limit is {limit} tokens "
                    f"(counted with the chat template). Shorten it by {tokens - limit} tokens."
                )
        return counts

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        output_dir: Path | None = None,
        user: str | None = None,
    ) -> GenerationResult:
        """Validate, then generate every image of `request`, saving PNGs as calls finish.

        `output_dir` defaults to a new folder per request under the output setting. If
        `cancel` is set, the request's images in the running call are dropped (the call
        stops at its next step unless other requests share it); images of earlier calls are
        kept and returned with `cancelled=True`.
        """
        tokens = self.validate(request)
        if self.closing:
            raise RequestError("The server is shutting down; try again in a minute.")
        if self.stalled:
            raise RequestError(
                "The GPU stopped making progress; the server is recovering or "
                "restarting. Try again in a minute."
            )
        with self._count_lock:
            self._active += 1
        try:
            return self._generate(request, tokens, on_progress, cancel, output_dir, user)
        finally:
            with self._count_lock:
                self._active -= 1

    def _generate(
        self,
        request: GenerationRequest,
        tokens: dict[str, int],
        on_progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
        output_dir: Path | None,
        user: str | None,
    ) -> GenerationResult:
        started, created = time.monotonic(), datetime.now(UTC)
        request_id = uuid.uuid4().hex[:8]
        base = request.seed if request.seed != -1 else secrets.randbelow(RANDOM_SEED_RANGE)
        texts = [request.text_of(p) for p in request.prompts]  # what the model reads
        per = request.images_per_prompt
        items = [
            WorkItem(
                k,
                k // per,
                k % per,
                texts[k // per],
                base + request.seed_offset(k),
                -(-tokens[texts[k // per]] // CAPTION_MULTIPLE),
            )
            for k in range(request.image_count)
        ]
        # Absolute, so that paths reported to clients mean something outside this process.
        folder = output_dir or request_dir(self.settings.output_dir.resolve(), request_id, datetime.now())
        label = self.model.label
        logger.info(
            "request %s: %d prompts x %d = %d images, %dx%d, %d steps, guidance %g, seeds %d..%d, %s",
            request_id,
            len(request.prompts),
            per,
            len(items),
            request.width,
            request.height,
            request.steps,
            request.guidance_scale,
            base,
            max(i.seed for i in items),
            label,
        )

        job = Job(
            request_id=request_id,
            items=items,
            width=request.width,
            height=request.height,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            negative_prompt=request.negative_prompt,
            on_step=on_progress,
            on_image=lambda item, image: self._save(request, request_id, item, image, folder),
            cancel=cancel or threading.Event(),
        )
        self.lane.submit(job)
        while not job.done.wait(0.05):
            if job.stopped:  # a Stop, or the engine closing
                self.lane.withdraw(job)  # its images in a running call are dropped
                break
        futures.wait(list(job.saves))
        if isinstance(job.error, LaneError):  # out of memory, a stalled call: the message says it
            raise RequestError(str(job.error)) from job.error
        if job.error is not None:  # a bug or a broken model: logged with its traceback by the lane
            raise RequestError(
                f"Generation failed: {type(job.error).__name__}: {job.error}. The server logged the "
                "details and goes on serving; try again, and tell an admin if it keeps happening."
            ) from job.error
        unsaved = next((e for e in map(Future.exception, job.saves) if isinstance(e, OSError)), None)
        if unsaved is not None:  # disk full, folder not writable, ...: the server itself is fine
            logger.error("request %s: could not save images in %s: %s", request_id, folder, unsaved)
            raise RequestError(
                f"Could not save the images: {unsaved.strerror or unsaved} ({unsaved.filename or folder}). "
                f"An admin should check that {self.settings.output_dir} is writable and has free space."
            )
        made = [image for image in (f.result() for f in job.saves) if image is not None]
        images = sorted(made, key=lambda image: image.index)
        cancelled = job.stopped and len(images) + len(job.black) < len(items)

        elapsed = time.monotonic() - started
        logger.info(
            "request %s: %s, %d of %d images in %.2f s (%s)",
            request_id,
            "cancelled" if cancelled else "done",
            len(images),
            len(items),
            elapsed,
            label,
        )
        result = GenerationResult(
            request_id=request_id,
            request=request,
            seeds=tuple(item.seed for item in items),
            images=tuple(images),
            cancelled=cancelled,
            elapsed_s=elapsed,
            model_label=label,
            is_demo=self.model.is_demo,
            output_dir=folder,
            black_seeds=tuple(sorted(job.black)),
        )
        # One folder per request gets manifest.json; a shared folder (batch mode's --out) one per request.
        name = MANIFEST_NAME if output_dir is None else f"manifest-{request_id}.json"
        try:
            write_manifest(folder / name, manifest(result, created, user))
        except OSError as exc:  # the images are saved; the request is not lost for want of it
            logger.error("request %s: could not write its manifest in %s: %s", request_id, folder, exc)
        return result

    def _save(
        self,
        request: GenerationRequest,
        request_id: str,
        item: WorkItem,
        image: Image.Image,
        folder: Path,
    ) -> GeneratedImage:
        prompt = request.prompts[item.prompt_index]  # as typed: item.prompt has the style too
        parameters: dict[str, Any] = {
            "prompt": prompt,
            "seed": item.seed,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "model": self.model.label,
            "request_id": request_id,
            "index": item.index,
        }
        if request.style.strip():
            parameters["style"] = request.style
        parameters["seed_policy"] = request.seed_policy
        if request.guidance_scale > 0 and request.negative_prompt:
            parameters["negative_prompt"] = request.negative_prompt
        path = save_png(image, folder, image_stem(item.index + 1, prompt, item.seed), parameters)
        return GeneratedImage(image, item.index, item.prompt_index, item.variant, prompt, item.seed, path)


def manifest(result: GenerationResult, created: datetime, user: str | None) -> dict[str, Any]:
    """Everything about a finished request: what was asked, what was made, by whom, how fast."""
    request = result.request
    return {
        "request_id": result.request_id,
        "created": created.isoformat(timespec="seconds"),
        "status": "stopped" if result.cancelled else "done",
        "user": user,
        "model": result.model_label,
        "demo": result.is_demo,
        "prompts": list(request.prompts),
        "style": request.style,
        "images_per_prompt": request.images_per_prompt,
        "seed": result.base_seed,
        "seed_policy": request.seed_policy,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "negative_prompt": request.negative_prompt,
        "images": [
            {
                "file": i.path.name,
                "prompt_index": i.prompt_index,
                "variant": i.variant,
                "prompt": i.prompt,
                "seed": i.seed,
            }
            for i in result.images
        ],
        "black_seeds": list(result.black_seeds),
        "elapsed_s": round(result.elapsed_s, 3),
        "images_per_s": round(len(result.images) / result.elapsed_s, 3) if result.elapsed_s else None,
    }


def _is_control(char: str) -> bool:
    """Control characters (tab aside), lone surrogates, and U+FFFD, which stands in for bytes
    that were not valid UTF-8."""
    return char != "\t" and (unicodedata.category(char) in ("Cc", "Cs") or char == "\ufffd")


def _check_int(name: str, value: Any, low: int, high: int, also: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be {also}a whole number from {low} to {high} (got {value!r}).")
