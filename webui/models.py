"""Which model a name stands for, and the defaults a job for it takes.

Z-Image comes as Turbo (distilled: 8 steps, no guidance, the negative prompt unused) and as
base (`Tongyi-MAI/Z-Image`: 28-50 steps, guidance 3-5, a negative prompt that matters), with the
same architecture, tokenizer and pipeline class. A server (or a GPU worker) serves one model;
jobs name it by its label (what GET /api/v1/models lists and the page's model menu shows). The
built-in demo model has a second variant, `demo-base` (other weights, base's defaults), so
that routing by model runs on real processes without a download.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from webui.request import GenerationRequest, RequestError
from webui.settings import DEFAULT_GUIDANCE, DEFAULT_STEPS, FULL_RANDOM

DEMO, DEMO_BASE = "demo", "demo-base"  # ZIMAGE_MODEL values of the built-in model's variants
DEMO_LABEL, DEMO_BASE_LABEL = "demo model", "demo model (base)"
FULL_RANDOM_LABEL = "full-size random model"
BASE_HUB_ID = "Tongyi-MAI/Z-Image"


@dataclass(frozen=True)
class Family:
    """What a model's jobs take unless they say otherwise."""

    name: str  # "turbo" or "base"
    steps: int
    guidance: float
    negative: bool  # the negative prompt matters (the page shows it)


TURBO = Family("turbo", DEFAULT_STEPS, DEFAULT_GUIDANCE, negative=False)
BASE = Family("base", 28, 4.0, negative=True)


def family_of(label: str) -> Family:
    """Base for Z-Image base (its hub id, a folder named after it, the demo's base variant);
    Turbo for anything else, as it was before there were two."""
    lowered = label.lower().rstrip("/")
    if "turbo" in lowered:
        return TURBO
    if label == DEMO_BASE_LABEL or lowered.endswith(("z-image", "z_image", "z-image-base")):
        return BASE
    return TURBO


def with_model(request: GenerationRequest, served: list[str]) -> GenerationRequest:
    """The request naming its model (`served[0]`, the default, when it names none);
    RequestError naming the models served when it names another."""
    if not request.model:
        return dataclasses.replace(request, model=served[0])
    if request.model not in served:
        raise RequestError("model_not_served", model=request.model[:80], served=", ".join(served))
    return request


def is_demo_name(name: str) -> bool:
    """A ZIMAGE_MODEL value whose images are noise (built here, random weights)."""
    return name in (DEMO, DEMO_BASE, FULL_RANDOM)


def demo_label(name: str) -> str:
    return {DEMO: DEMO_LABEL, DEMO_BASE: DEMO_BASE_LABEL, FULL_RANDOM: FULL_RANDOM_LABEL}[name]
