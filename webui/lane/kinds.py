"""Kinds of pipeline call: what the images of a call start from.

- text: the prompt alone (`ZImagePipeline`, the loaded pipeline itself);
- variation: an input image noised to `strength` (`ZImageImg2ImgPipeline`);
- product: a placed product kept, the rest generated (`ZImageInpaintPipeline`, strength 1).

The other kinds' pipelines are built with diffusers' `from_pipe` over the loaded pipeline's
components, so they share its weights (no second copy in memory), once each, on first use.
Nothing outside this module names a diffusers pipeline class.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diffusers import DiffusionPipeline, ZImageImg2ImgPipeline, ZImageInpaintPipeline
from PIL import Image

from webui.request import PRODUCT, TEXT, VARIATION, steps_run

__all__ = ["Kinds", "Start", "steps_run"]

PIPELINES: dict[str, type[DiffusionPipeline]] = {
    VARIATION: ZImageImg2ImgPipeline,
    PRODUCT: ZImageInpaintPipeline,
}


@dataclass(frozen=True)
class Start:
    """What one image of a call starts from, besides its prompt and seed."""

    image: Image.Image  # RGB, at the call's size
    mask: Image.Image | None = None  # "L", product calls: white = generate, black = keep


class Kinds:
    """The pipeline of each kind of call, over one loaded pipeline's components."""

    def __init__(self, pipe: DiffusionPipeline) -> None:
        self._pipes: dict[str, DiffusionPipeline] = {TEXT: pipe}
        self._lock = threading.Lock()  # the lane's thread and a warm-up may ask at once

    def pipe(self, kind: str) -> DiffusionPipeline:
        with self._lock:
            if kind not in self._pipes:
                made = PIPELINES[kind].from_pipe(self._pipes[TEXT])
                made.set_progress_bar_config(disable=True)  # progress goes through callbacks
                self._pipes[kind] = made
            return self._pipes[kind]

    @staticmethod
    def arguments(kind: str, starts: Sequence[Start | None], strength: float) -> dict[str, Any]:
        """The call's keyword arguments that only this kind takes."""
        if kind == TEXT:
            return {}
        if any(start is None for start in starts):
            raise ValueError(f"every image of a {kind} call needs its start image")
        images = [start.image for start in starts if start is not None]
        if kind == VARIATION:
            return {"image": images, "strength": strength}
        masks = [start.mask for start in starts if start is not None]
        return {"image": images, "mask_image": masks, "strength": 1.0}
