"""The REST API under /api/v1: jobs on the same service, queue, limits and History as the page.

POST   /api/v1/jobs                   submit: 202 with the job's id, status and place, at once
GET    /api/v1/jobs                   your jobs, newest first
GET    /api/v1/jobs/{id}              status, progress, images (each with a PNG URL)
GET    /api/v1/jobs/{id}/events       server-sent events: progress, then the end
DELETE /api/v1/jobs/{id}              Stop (finished images are kept)
GET    /api/v1/jobs/{id}/images/{n}.png
GET    /api/v1/models                 the models a job may name, with their defaults
GET    /api/v1/loras                  the LoRA library
GET    /api/v1/queue, POST /api/v1/queue/pause, /resume, /api/v1/jobs/{id}/move  (queue_routes.py)
GET    /api/v1/openapi.json, /api/v1/docs
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from webui.api.common import ApiContext, ApiError, refusal
from webui.api.queue_routes import add_queue_routes
from webui.api.schema import JobIn, request_of
from webui.jobs.record import SAVED
from webui.jobs.views import Identity
from webui.models import family_of
from webui.words import Message, words

EVENT_WAIT_S = 5.0  # an event stream looks at its job when the queue changes, or after this
JOBS_LISTED = 50


def create_rest_api(ctx: ApiContext) -> FastAPI:
    api = FastAPI(
        title="Z-Image-Turbo WebUI",
        version="1",
        description="Jobs on the team's queue: submit, follow, fetch, stop. With a login on, send "
        "`Authorization: Bearer KEY` (python -m webui.keys add NAME).",
        docs_url=None,  # served below, from the installed bundle rather than a CDN
        redoc_url=None,
    )
    api.mount("/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="static")
    caller = Depends(ctx.caller)  # who calls: 401 without a key when a login is on
    _error_bodies(api)

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="Z-Image-Turbo WebUI API",
            swagger_js_url=f"{root}/static/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon-32x32.png",
        )

    @api.post("/jobs", status_code=202)
    async def submit(job: JobIn, request: Request, who: Identity = caller) -> dict[str, Any]:  # type: ignore[valid-type]
        """Queue a job and answer at once. Input images (kinds `product` and `variation`) come
        base64-encoded in `images`; they are checked and stored before the job is accepted."""
        ctx.check_workers()
        service = ctx.service
        try:
            # Off the event loop, as the page does: long prompt lists and images take a while.
            record = await asyncio.to_thread(
                lambda: service.submit(
                    request_of(job, service.settings, service.inputs, service.runner.models()[0]), who
                )
            )
        except Message as exc:
            raise refusal(exc) from None
        return ctx.job_json(request, record, ctx.service.view(record.id))

    @api.get("/jobs")
    async def jobs(
        request: Request, who: Identity = caller, limit: int = Query(JOBS_LISTED, ge=1, le=500)
    ) -> list[dict]:
        """Your jobs, newest first (everyone's when no login is on)."""
        records = ctx.service.records(limit, owner=who.user)
        return [ctx.job_json(request, r, ctx.service.view(r.id)) for r in records]

    @api.get("/jobs/{job_id}")
    async def job(job_id: str, request: Request, who: Identity = caller) -> dict[str, Any]:
        record = ctx.record(job_id)
        return ctx.job_json(request, record, ctx.service.view(job_id))

    @api.get("/jobs/{job_id}/events")
    async def events(job_id: str, request: Request, who: Identity = caller) -> StreamingResponse:
        """`progress` events while the job waits and runs, then one `end` event with the job."""
        ctx.record(job_id)  # 404 before the stream starts
        return StreamingResponse(_events(ctx, request, job_id), media_type="text/event-stream")

    @api.delete("/jobs/{job_id}")
    async def stop(job_id: str, request: Request, who: Identity = caller) -> dict[str, Any]:
        """Stop at the next step; the images finished by then are kept."""
        record = ctx.record(job_id)
        try:
            ctx.service.stop(job_id, who)
        except Message as exc:
            raise refusal(exc) from None
        return ctx.job_json(request, record, ctx.service.view(job_id))

    add_queue_routes(api, ctx, caller)

    @api.get("/models")
    async def models(who: Identity = caller) -> list[dict[str, Any]]:
        """The models a job may name now (`model`), the server's default first (in distributed
        mode, with those a worker online serves), and what a job for each takes by default."""
        served = ctx.service.runner.models()
        return [
            {
                "name": label,
                "default": label == served[0],
                "family": family.name,
                "steps": family.steps,
                "guidance_scale": family.guidance,
                "negative_prompt": family.negative,
            }
            for label, family in ((label, family_of(label)) for label in served)
        ]

    @api.get("/loras")
    async def loras(who: Identity = caller) -> list[dict[str, Any]]:
        """The LoRA library: each file's name, size, SHA-256 and trigger words or description; a
        file that cannot be used (unreadable, made for another model) with the reason instead."""
        return await asyncio.to_thread(ctx.service.loras.entries)

    @api.get("/jobs/{job_id}/images/{index}.png", response_class=FileResponse)
    async def image(job_id: str, index: int, request: Request, exp: str = "", sig: str = "") -> FileResponse:
        """One PNG: with the key, or with the `exp` and `sig` its URL carries until it expires."""
        if not ctx.signed(job_id, index, exp, sig):
            try:
                ctx.caller(request)
            except ApiError:
                if sig:
                    raise ApiError(403, words("link_expired")) from None
                raise
        record = ctx.record(job_id)
        if not 0 <= index < len(record.images) or record.images[index].state != SAVED:
            raise ApiError(404, f"Job {job_id} has no saved image {index}.")
        path: Path = record.path_of(record.images[index])
        return FileResponse(path, media_type="image/png", filename=path.name)

    return api


async def _events(ctx: ApiContext, request: Request, job_id: str) -> AsyncIterator[str]:
    sent, seen = None, -1
    while not await request.is_disconnected():
        record, view = ctx.service.record(job_id), ctx.service.view(job_id)
        if record is None or view is None:
            return
        body = ctx.job_json(request, record, view)
        if view.finished:
            yield f"event: end\ndata: {json.dumps(body)}\n\n"
            return
        now = json.dumps({k: body[k] for k in ("status", "position", "progress")})
        if now != sent:
            yield f"event: progress\ndata: {now}\n\n"
            sent = now
        seen = await ctx.service.changes.settled(seen, EVENT_WAIT_S)  # a step, the end, a move...


def _error_bodies(api: FastAPI) -> None:
    """Every error as {"error": {"message": ..., "code": ...}}: a script reads one shape."""

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail), "code": None}
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in exc.errors()]
        message = "The request does not match the job schema (see /api/v1/docs): " + "; ".join(problems)
        return JSONResponse({"error": {"message": message, "code": "invalid"}}, status_code=422)
