"""The torch work of one pipeline call: prompt embeddings, denoising, decoding to pixels.

Around the transformer only what must be serial runs here: each unique prompt text is
encoded once (recent ones are cached), and latents are decoded by us (on a GPU straight to
uint8 pixels; on the CPU one image at a time, where that is faster; images above a size in
overlapping tiles, one at a time, so that 2048x2048 fits on a 24 GB card). Converting CPU
output to pixels, PNG encoding and saving happen elsewhere, while the next call runs.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from webui.lane.adapters import Adapters
from webui.lane.kinds import Kinds, Start, steps_run
from webui.loading import LoadedModel
from webui.loras import LoraLibrary
from webui.request import TEXT
from webui.settings import MODEL_MAX_TOKENS

EMBEDDING_CACHE_SIZE = 256  # prompts; about 0.5 MB each for the real model in bf16
TILE_PIXELS = 1024  # side of a VAE decode tile: one tile costs what a 1024x1024 image costs


@dataclass(frozen=True)
class CallShape:
    """What every image of one call shares."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: str
    kind: str = TEXT  # what the images start from (webui/lane/kinds.py)
    strength: float = 1.0  # variation calls: how far from the input image
    loras: tuple[tuple[str, float, str], ...] = ()  # (name, strength, sha256): the call's adapters

    @property
    def steps_run(self) -> int:
        """Denoising steps the call runs (fewer than `steps` for a variation)."""
        return steps_run(self.kind, self.steps, self.strength)

    @property
    def units(self) -> int:
        """Work per image, for speed estimates: pixels times steps run."""
        return self.width * self.height * self.steps_run


# (step just finished, 1-based) -> True to stop the call before its next step.
StepCallback = Callable[[int], bool]


@dataclass(frozen=True)
class CallTiming:
    """time.monotonic() marks of the last call: what the lane measures GPU idle gaps with."""

    entered: float  # run() called
    denoising: float  # prompts encoded: the pipeline gets its inputs
    ended: float  # pixels (or the float decoder output) on the host


class PipelineCalls:
    """Makes pipeline calls on one loaded model: run() on the lane's thread only; prefetch()
    may run on one other thread meanwhile."""

    def __init__(
        self,
        model: LoadedModel,
        tiling_above_mp: float = 1.5,
        loras: LoraLibrary | None = None,
        loras_kept: int = 8,
    ) -> None:
        """Images above `tiling_above_mp` megapixels are decoded in tiles, one at a time; LoRAs
        come from `loras` (at most `loras_kept` adapters stay loaded)."""
        self.model = model
        self.kinds = Kinds(model.pipe)
        self.adapters = None if loras is None else Adapters(model.pipe, loras, loras_kept)
        self.tiling_above = tiling_above_mp * 1e6
        self.last: CallTiming | None = None
        self.on_embedded: Callable[[], None] | None = None  # each call's prompts are encoded
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()  # the cache and the text encoder: lane and prefetch threads
        cuda = model.device.type == "cuda"
        self._stream = torch.cuda.Stream(model.device) if cuda else None
        vae = model.pipe.vae
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        # diffusers sizes tiles from the VAE's sample_size (tiny in the demo): set ours, for both.
        vae.tile_sample_min_size = TILE_PIXELS
        vae.tile_latent_min_size = TILE_PIXELS // self.vae_scale

    def run(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        shape: CallShape,
        on_step: StepCallback,
        starts: Sequence[Start | None] = (),
    ) -> list[torch.Tensor] | None:
        """One call: per image, uint8 HWC pixels (GPU) or the float decoder output (CPU);
        None if `on_step` stopped it. `starts`: each image's start image, for other kinds than text."""
        pipe, device = self.kinds.pipe(shape.kind), self.model.device
        if self.adapters is not None:  # this call's LoRAs and no others: every call says which
            self.adapters.use(shape.loras)
        elif shape.loras:
            raise RuntimeError("this lane has no LoRA library")
        extra = self.kinds.arguments(shape.kind, starts or [None] * len(prompts), shape.strength)
        entered, self.last = time.monotonic(), None  # a call that fails leaves no timing behind
        embeds = self.embed(list(prompts))
        negative = self.embed([shape.negative_prompt] * len(prompts)) if shape.guidance_scale > 0 else None
        denoising = time.monotonic()
        if self.on_embedded is not None:
            self.on_embedded()  # from here on the text encoder is free for the next call's prompts
        generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        interrupted = False

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            nonlocal interrupted
            if on_step(step + 1) and step + 1 < shape.steps_run:
                pipe._interrupt = True  # diffusers' own flag, checked before each step
                interrupted = True
            return tensors

        output = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            height=shape.height,
            width=shape.width,
            num_inference_steps=shape.steps,
            guidance_scale=shape.guidance_scale,
            generator=generators,
            max_sequence_length=MODEL_MAX_TOKENS,
            callback_on_step_end=step_end,
            output_type="latent",
            **extra,
        )
        images = None if interrupted else self.decode(output.images)  # partly denoised: nothing to decode
        self.last = CallTiming(entered, denoising, time.monotonic())
        return images

    def warm_up(self, width: int, height: int, steps: int) -> float:
        """Calls of 1 image, of 2, and of 2 whose captions pad to different lengths (an
        attention mask): every kind of call a compiled transformer (webui/speed.py) has graphs
        for, so that no request compiles after it (tests/test_speed.py counts the graphs).
        Seconds taken."""
        started = time.monotonic()
        shape = CallShape(width, height, steps, 0.0, "")
        long = "warm-up, a long caption " + "with many words " * 12  # a caption bucket further on
        for prompts in (["warm-up"], ["warm-up 1", "warm-up 2"], ["warm-up 3", long]):
            self.run(prompts, list(range(len(prompts))), shape, lambda _: False)
        return time.monotonic() - started

    def embed(self, prompts: list[str]) -> list[torch.Tensor]:
        """Text-encoder output per prompt; each unique text encoded once, recent ones cached."""
        with self._lock:
            self._encode_missing(prompts)
            for text in prompts:
                self._embeddings.move_to_end(text)
            result = [self._embeddings[p] for p in prompts]
            while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                self._embeddings.popitem(last=False)
            return result

    def prefetch(self, prompts: list[str]) -> None:
        """Encode the prompts of a coming call ahead, from another thread while a call runs.

        On a GPU the encoder runs on a CUDA stream of its own, so its work overlaps the running
        call instead of queueing behind it, and is finished before the embeddings are cached.
        """
        with self._lock:
            if self._stream is None:
                self._encode_missing(prompts)
                return
            with torch.cuda.stream(self._stream):
                encoded = self._encode_missing(prompts)
            self._stream.synchronize()
            for embedding in encoded:  # used on the lane's stream: not freed while it still reads
                embedding.record_stream(torch.cuda.default_stream(self.model.device))

    @torch.no_grad()  # encode_prompt records autograd history otherwise, kept alive by the cache
    def _encode_missing(self, prompts: list[str]) -> list[torch.Tensor]:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._embeddings))
        if not missing:
            return []
        # A fresh list: _encode_prompt overwrites its argument with templated text.
        encoded, _ = self.model.pipe.encode_prompt(
            prompt=list(missing),
            device=self.model.device,
            do_classifier_free_guidance=False,
            max_sequence_length=MODEL_MAX_TOKENS,
        )
        self._embeddings.update(zip(missing, encoded, strict=True))
        return encoded

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, on_device: bool | None = None) -> list[torch.Tensor]:
        """VAE output per image: uint8 HWC pixels on a GPU; on the CPU, the float decoder output.

        On a GPU the conversion to pixels is GPU work and shrinks the copy to the CPU fourfold.
        On the CPU it is CPU work either way, so it moves to the saver threads, off the lane.
        `on_device` forces one way or the other (tests run the GPU way on the CPU).
        """
        vae = self.model.pipe.vae
        latents = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        pixels = latents.shape[-1] * latents.shape[-2] * self.vae_scale**2
        # Large images: overlapping tiles (blended, no seams) and one image at a time.
        vae.use_tiling = vae.use_slicing = pixels > self.tiling_above
        if on_device is None:
            on_device = self.model.device.type != "cpu"
        if not on_device:
            # Measured on the demo model: one at a time beats one batched decode on CPU.
            return [vae.decode(z[None], return_dict=False)[0][0] for z in latents]
        return list(to_pixels(vae.decode(latents, return_dict=False)[0]).cpu())

    def release_memory(self) -> None:
        gc.collect()
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()


def to_pixels(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1], CHW or NCHW, to contiguous uint8 HWC / NHWC pixels.

    The same values as diffusers' postprocess then numpy_to_pil (denormalize, clamp to
    0..1, times 255, round), in fewer passes over the data.
    """
    pixels = decoded.float().mul(0.5).add_(0.5).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return pixels.movedim(-3, -1).contiguous()
