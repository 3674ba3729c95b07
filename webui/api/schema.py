"""The REST API's job body, derived from the request's field table (webui/request.py).

Each field of the table with `api` set becomes a body field with its type, default and help;
its fixed choices and ranges are shown in the OpenAPI schema but checked by the job service,
so that a bad value gets the page's words (400), not a schema error. Input images come as
base64 in JSON (`images`), one object per image; they are checked, prepared (a product's
cut-out) and stored by content hash before the job is accepted.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from webui.inputs import InputStore, input_name, prepare_input
from webui.models import family_of
from webui.prompts import parse_prompts
from webui.request import API_FIELDS, GenerationRequest, RequestError
from webui.settings import Settings


class ImageIn(BaseModel):
    """One input image: a product (its cut-out) or a reference image."""

    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="The image file (PNG, JPEG or WebP) in base64.")
    name: str = Field("", description="What captions and file names call it (default: image N).")
    mask: str | None = Field(
        None,
        description="Product shots: a PNG in base64, the image's size; its opaque pixels mark the "
        "product to keep, its transparent ones the scene to generate (OpenAI's mask meaning).",
    )
    cutout: str = Field(
        "auto",
        description="Product shots: `auto` (the mask if given, else the image's transparency) or "
        "`plain` (the image's plain background colour removed, within a tolerance).",
        json_schema_extra={"enum": ["auto", "plain"]},
    )


class LoraIn(BaseModel):
    """One LoRA of the library (GET /api/v1/loras lists them)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The file's name without .safetensors.")
    strength: float = Field(1.0, description="-2..2; 0 is the plain model.", strict=True)


def _body_field(field: Any) -> tuple[Any, Any]:
    if field.name == "loras":
        return list[LoraIn], Field([], description=field.spec.help)
    extra: dict[str, Any] = {}
    if field.spec.choices:
        extra["enum"] = list(field.spec.choices)
    if field.spec.low is not None:
        extra |= {"minimum": field.spec.low, "maximum": field.spec.high}
    kind = list[str] if field.type == tuple[str, ...] else field.type
    # Numbers strictly: true is not 1 (the page's form refuses it too); an int is a float.
    strict = field.type in (int, float) or None
    return kind, Field(
        field.default, description=field.spec.help, json_schema_extra=extra or None, strict=strict
    )


JobIn: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "JobIn",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A job: the page's form as JSON, input images included.",
    prompts=(list[str] | str, Field(description=API_FIELDS[0].spec.help)),
    **{f.name: _body_field(f) for f in API_FIELDS if f.name != "prompts"},
    images=(list[ImageIn], Field([], description="Input images, for the kinds `product` and `variation`.")),
)


def decode(text: str, what: str) -> bytes:
    """Base64 (standard or URL-safe, with or without a data: prefix) to bytes; 400 when not."""
    body = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        # Line breaks and spaces (the `base64` command wraps at 76 columns) are not data.
        return base64.b64decode("".join(body.split()).replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("not_base64", name=what) from None


def request_of(job: BaseModel, settings: Settings, store: InputStore, model: str) -> GenerationRequest:
    """The generation request of a body: prompts parsed, input images checked and stored; steps
    and guidance it leaves out as its model (`model` when it names none) takes them."""
    values = job.model_dump(exclude={"prompts", "images", "loras"})
    family = family_of(values["model"] or model)
    for name, value in (("steps", family.steps), ("guidance_scale", family.guidance)):
        if name not in job.model_fields_set:
            values[name] = value
    values["loras"] = [(lora.name, lora.strength, "") for lora in job.loras]  # type: ignore[attr-defined]
    lines = job.prompts if isinstance(job.prompts, str) else "\n".join(job.prompts)  # type: ignore[attr-defined]
    images: list[ImageIn] = job.images  # type: ignore[attr-defined]
    if len(images) > settings.max_input_images:
        raise RequestError("too_many_inputs", count=len(images), limit=settings.max_input_images)
    digests, names = [], []
    for n, image in enumerate(images, 1):
        name = input_name(image.name, n)
        data = decode(image.data, name)
        mask = decode(image.mask, f"{name} (mask)") if image.mask else None
        prepared = prepare_input(values["kind"], data, name, settings, mask=mask, cutout=image.cutout)
        digests.append(store.put(prepared))
        names.append(name)
    prompts = parse_prompts(lines, limit=settings.max_prompts)
    return GenerationRequest(prompts=prompts, **values, inputs=digests, input_names=names)
