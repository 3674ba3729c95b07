"""`POST /v1/images/generations` and `/v1/images/edits` as OpenAI's images API has them, so
that any tool that speaks OpenAI can generate here with only its base URL changed. Each call
is a job like any other: in the queue, in History, under the same limits; the answer comes
when the job ends.

Edits (multipart: `image`, optional `mask`, `prompt`, `n`, `size`, `response_format`) keep
OpenAI's meaning: the transparent pixels of the mask (or, without a mask, of the image) are
where to generate, everything else is kept, pixel for pixel (a product-in-scene job whose
image fills the frame).

Fields: `prompt`, `n` (images of the prompt), `size` ("WxH"), `response_format` (`b64_json`,
the default, or `url`), `model` (a model of GET /api/v1/models; any other name, such as
OpenAI's own, means the server's default), and the extras `seed`,
`steps`, `negative_prompt` and `loras` (as REST has it: `[{"name", "strength"}]`; in the
multipart edits, that list as JSON text in a form field). Other OpenAI fields (quality,
style, user...) are accepted and ignored. Errors come in OpenAI's shape:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from webui.api.common import ApiContext, ApiError, refusal
from webui.api.schema import LoraIn
from webui.inputs import input_name, prepare_input
from webui.jobs.record import FAILED, STOPPED, JobRecord
from webui.models import family_of
from webui.request import PRODUCT, GenerationRequest
from webui.settings import DEFAULT_SIZE
from webui.words import Message

WAIT_S = 5.0  # a waiting answer looks at its job when the queue changes, or after this
SIZE = re.compile(r"(\d{1,6})x(\d{1,6})")  # more digits than any size: refused unparsed


class ImagesIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI's other fields: accepted, unused
    prompt: str
    model: str | None = None
    n: int = 1
    size: str = f"{DEFAULT_SIZE}x{DEFAULT_SIZE}"
    response_format: Literal["b64_json", "url"] = "b64_json"
    seed: int = -1
    steps: int | None = None  # the model's default
    negative_prompt: str = ""
    loras: list[LoraIn] = []


LORAS = TypeAdapter(list[LoraIn])


def openai_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/images/generations")
    async def generations(body: ImagesIn, request: Request) -> JSONResponse:
        try:
            who = ctx.caller(request)
            ctx.check_workers()
            width, height = _size(body.size)
            job = GenerationRequest(
                prompts=[body.prompt],
                images_per_prompt=body.n,
                seed=body.seed,
                width=width,
                height=height,
                **_model(ctx, body.model, body.steps),
                negative_prompt=body.negative_prompt,
                loras=_loras(body.loras),
            )
            record = await asyncio.to_thread(ctx.service.submit, job, who)
        except Message as exc:
            return _openai_error(refusal(exc))
        except ApiError as exc:
            return _openai_error(exc)
        return await _answer(ctx, request, record.id, body.response_format)

    @router.post("/v1/images/edits")
    async def edits(
        request: Request,
        prompt: str = Form(...),
        image: UploadFile = File(...),  # noqa: B008
        mask: UploadFile | None = File(None),  # noqa: B008
        n: int = Form(1),
        size: str = Form(f"{DEFAULT_SIZE}x{DEFAULT_SIZE}"),
        response_format: Literal["b64_json", "url"] = Form("b64_json"),
        seed: int = Form(-1),
        steps: int | None = Form(None),
        model: str = Form(""),
        loras: str = Form("[]"),
    ) -> JSONResponse:
        try:
            who = ctx.caller(request)
            ctx.check_workers()
            width, height = _size(size)
            chosen = _loras(_loras_form(loras))
            settings, store = ctx.service.settings, ctx.service.inputs
            limit = int(settings.max_input_mb * 1e6) + 1  # read no further than one byte past it
            data = await image.read(limit)
            masked = await mask.read(limit) if mask is not None else None
            name = input_name(image.filename, 1)

            def accept() -> JobRecord:
                cutout = prepare_input(PRODUCT, data, name, settings, mask=masked)
                job = GenerationRequest(
                    prompts=[prompt],
                    images_per_prompt=n,
                    seed=seed,
                    width=width,
                    height=height,
                    **_model(ctx, model, steps),
                    kind=PRODUCT,
                    inputs=[store.put(cutout)],
                    input_names=[name],
                    position="frame",
                    loras=chosen,
                )
                return ctx.service.submit(job, who)

            record = await asyncio.to_thread(accept)
        except Message as exc:
            return _openai_error(refusal(exc))
        except ApiError as exc:
            return _openai_error(exc)
        return await _answer(ctx, request, record.id, response_format)

    return router


def _model(ctx: ApiContext, asked: str | None, steps: int | None) -> dict[str, Any]:
    """The model a call names, if served here (else the default, as OpenAI's model names mean
    nothing here), with its steps and guidance unless the call gives steps."""
    served = ctx.service.runner.models()
    model = asked if asked in served else served[0]
    family = family_of(model)
    return {
        "model": model,
        "steps": family.steps if steps is None else steps,
        "guidance_scale": family.guidance,
    }


def _loras(loras: list[LoraIn]) -> list[tuple[str, float, str]]:
    return [(lora.name, lora.strength, "") for lora in loras]


def _loras_form(text: str) -> list[LoraIn]:
    """The `loras` form field of a multipart call: the REST list as JSON text."""
    try:
        return LORAS.validate_json(text)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        shape = "a JSON list of {name, strength}"
        raise ApiError(400, f"loras must be {shape} ({where}: {problem['msg']}).") from None


def _size(text: str) -> tuple[int, int]:
    size = SIZE.fullmatch(text.strip())
    if size is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ApiError(400, f"size must be WIDTHxHEIGHT, such as 1024x1024 (got {shown!r}).")
    return int(size[1]), int(size[2])


async def _answer(ctx: ApiContext, request: Request, job_id: str, response_format: str) -> JSONResponse:
    """The job's images in OpenAI's shape, once it ends (or the client leaves)."""
    seen = -1
    while not await request.is_disconnected():
        view = ctx.service.view(job_id)
        if view is None or view.finished:
            break
        seen = await ctx.service.changes.wait(seen, WAIT_S)  # the end is a change
    record = ctx.record(job_id)
    if record.status in (FAILED, STOPPED) and not record.saved:
        message = record.error or f"Job {record.id} was stopped before any image was made."
        return _openai_error(ApiError(500 if record.status == FAILED else 409, message))
    data = [_image(ctx, request, record, i.index, response_format) for i in record.saved]
    return JSONResponse({"created": int(record.created.timestamp()), "data": data})


def _image(ctx: ApiContext, request: Request, record: Any, index: int, kind: str) -> dict[str, str]:
    image = record.images[index]
    entry = {"revised_prompt": record.prompt_of(image)}
    if kind == "url":
        return entry | {"url": ctx.image_url(request, record.id, index)}
    return entry | {"b64_json": base64.b64encode(record.path_of(image).read_bytes()).decode()}


def _openai_error(exc: ApiError) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
    kind = {
        401: "authentication_error",
        429: "rate_limit_error",
        500: "server_error",
        503: "server_error",
    }.get(exc.status_code, "invalid_request_error")
    body = {"error": {"message": detail["message"], "type": kind, "param": None, "code": detail.get("code")}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def invalid_openai_body(exc: RequestValidationError) -> JSONResponse:
    """A body that is not an images request, in OpenAI's error shape (400, as OpenAI answers)."""
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
    param = ".".join(map(str, first["loc"][1:])) or None
    body = {
        "error": {
            "message": f"{param}: {first['msg']}",
            "type": "invalid_request_error",
            "param": param,
            "code": None,
        }
    }
    return JSONResponse(body, status_code=400)
