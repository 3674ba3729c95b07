"""What a person asks for: prompts, input images and the settings of every image, as one value.

`GenerationRequest` is also the request's one field table: each field declares its type,
default, help and fixed limits once (`_field`), and the rest derive from it: the REST body
model and its OpenAPI schema (webui/api/rest.py), the batch command's flags (webui/batch.py),
the page's inputs and their conversion (webui/ui/), the generic range and choice checks
(webui/limits.py), the PNG metadata reuse reads back, and the record (`to_record()` /
`from_record()`). A new field is declared here, named in webui/words.py, and used where it
acts (a lane kind, placement).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    SEED_PER_IMAGE,
    SEED_PER_VARIANT,
    SEED_POLICIES,
)
from webui.words import Message

# Kinds of call: what the pipeline starts from (webui/lane/kinds.py runs each).
TEXT, PRODUCT, VARIATION = "text", "product", "variation"
KINDS = (TEXT, PRODUCT, VARIATION)
POSITIONS = ("center", "bottom", "frame")  # where a product stands (webui/product.py)


class RequestError(Message):
    """The request cannot run as asked; the message names the limit or the fix (by its key in
    webui/words.py, said in the asker's language)."""


def cannot_save(error: OSError, output_dir: Path) -> RequestError:
    """Disk full, folder not writable, ...: what the person is told (the server itself is fine)."""
    return RequestError("cannot_save", reason=error.strerror or error, file=error.filename, folder=output_dir)


@dataclass(frozen=True)
class FieldSpec:
    """What a field is beyond its name, type and default."""

    help: str
    choices: tuple[str, ...] = ()  # the only values allowed
    low: float | None = None  # fixed limits; those set by the server's settings are in limits.py
    high: float | None = None
    api: bool = True  # a field of the REST body and the batch command's flags
    form: bool = True  # an input of the page's Generate (and of /generate, /submit)
    png: bool = True  # carried in each PNG's metadata, read back by "Reuse a PNG's settings"


def _field(default: Any, help: str, **spec: Any) -> Any:
    return dataclasses.field(default=default, metadata={"spec": FieldSpec(help, **spec)})


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: inputs x prompts x variants, in that order; seeds as `seed_policy` says."""

    prompts: Sequence[str] = dataclasses.field(  # already parsed: one prompt per item
        metadata={"spec": FieldSpec("One prompt per line; templates ({red|navy}) expand.", png=False)}
    )
    images_per_prompt: int = _field(1, "Variants of each prompt (of each input image, with inputs).")
    seed: int = _field(-1, "Base seed; -1 picks a random one.")
    width: int = _field(DEFAULT_SIZE, "Width in pixels.")
    height: int = _field(DEFAULT_SIZE, "Height in pixels.")
    steps: int = _field(DEFAULT_STEPS, "Inference steps (8 for Turbo).")
    guidance_scale: float = _field(DEFAULT_GUIDANCE, "Classifier-free guidance; 0 for Turbo.")
    negative_prompt: str = _field("", "Used only when the guidance scale is above 0.")
    style: str = _field("", "Appended to every prompt after ', '.")
    seed_policy: str = _field(
        SEED_PER_IMAGE,
        f"{SEED_PER_IMAGE}: image k gets seed + k; {SEED_PER_VARIANT}: variant j of every prompt "
        "gets seed + j, so the sets differ only by prompt.",
        choices=SEED_POLICIES,
    )
    kind: str = _field(
        TEXT,
        f"{TEXT}: from the prompt alone; {PRODUCT}: each input's product kept, the scene generated "
        f"around it; {VARIATION}: each input image changed as much as `strength` says.",
        choices=KINDS,
    )
    inputs: tuple[str, ...] = _field(
        (), "Input images by content hash, as stored when the job was accepted.", api=False, form=False
    )
    input_names: tuple[str, ...] = _field(
        (), "Each input's name (its file's), for captions and file names.", api=False, form=False, png=False
    )
    strength: float = _field(
        0.6,
        "Variations: how far from the input (0 keeps it, 1 ignores it); steps x strength run.",
        low=0,
        high=1,
    )
    product_scale: float = _field(
        0.6,
        "Product in scene: the product's longer side, as a share of the frame's shorter side.",
        low=0.1,
        high=1,
    )
    position: str = _field(
        "center",
        "Product in scene: `center`, `bottom` (standing on the lower edge, with a margin) or "
        "`frame` (the image fills the frame as it is).",
        choices=POSITIONS,
    )

    loras: tuple[tuple[str, float, str], ...] = _field(
        (),
        "LoRAs of the library, at most 4, each a file's name without .safetensors and a strength "
        "(-2..2, default 1); the file's SHA-256 is kept as it was when the job was accepted.",
        form=False,
    )
    model: str = _field(
        "",
        "The model to run, by its name in GET /api/v1/models (Turbo, or base beside it); empty: "
        "the server's default. Filled in when the job is accepted.",
    )

    def __post_init__(self) -> None:
        # Tuples: nothing downstream (the pipeline rewrites lists in place) can change them.
        for name in ("prompts", "inputs", "input_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "loras", tuple(tuple(entry) for entry in self.loras))

    @property
    def sources(self) -> int:
        """How many times the prompt list runs: once per input image, once without inputs."""
        return max(1, len(self.inputs))

    @property
    def names(self) -> tuple[str, ...]:
        """Each input's name: as given, or "image N" (what an unnamed upload is called)."""
        return self.input_names or tuple(f"image {n + 1}" for n in range(len(self.inputs)))

    @property
    def image_count(self) -> int:
        return self.sources * len(self.prompts) * self.images_per_prompt

    def place_of(self, k: int) -> tuple[int, int, int]:
        """Image k's (input, prompt, variant) numbers."""
        per, count = self.images_per_prompt, len(self.prompts)
        return k // (per * count), k // per % count, k % per

    def seed_offset(self, k: int) -> int:
        """Image k's seed minus the base seed."""
        return k % self.images_per_prompt if self.seed_policy == SEED_PER_VARIANT else k

    def text_of(self, prompt: str) -> str:
        """What the model reads for `prompt`: the prompt, then the shared style."""
        return f"{prompt}, {self.style}" if self.style.strip() else prompt

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-ready values, under the field names."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GenerationRequest:
        """The request in `record` (extra keys ignored, missing ones at their defaults)."""
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})


def steps_run(kind: str, steps: int, strength: float) -> int:
    """Denoising steps a call of `kind` runs: a variation skips the first steps x (1 - strength),
    as diffusers' img2img `get_timesteps` does."""
    if kind != VARIATION:
        return steps
    return steps - int(max(steps - min(steps * strength, steps), 0))


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


# The table, as the derived parts read it: (name, type, default, spec) per field, in order.
TYPES: dict[str, Any] = typing.get_type_hints(GenerationRequest)


@dataclass(frozen=True)
class Field:
    name: str
    type: Any
    default: Any  # dataclasses.MISSING for prompts
    spec: FieldSpec


FIELDS: tuple[Field, ...] = tuple(
    Field(f.name, TYPES[f.name], f.default, f.metadata["spec"]) for f in dataclasses.fields(GenerationRequest)
)
FORM_FIELDS = tuple(f for f in FIELDS if f.spec.form)
API_FIELDS = tuple(f for f in FIELDS if f.spec.api)
