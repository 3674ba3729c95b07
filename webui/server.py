"""Serving the page: our FastAPI app with `/healthz`, the Gradio Blocks mounted at `/`.

We run uvicorn ourselves rather than `Blocks.launch()` so that the app has a health route
of its own, binds exactly the configured port (a taken port is an error, never a drift to
the next one), and shuts down cleanly on SIGTERM (what `supervisorctl stop` sends): the job
service stops taking work, running jobs stop at their next step and go back to waiting (the
next start resumes them), finished images stay on disk, and uvicorn closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, start_http_server
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount

from webui.access import Access, LoginGuard
from webui.api.common import ApiContext
from webui.api.openai_images import invalid_openai_body, openai_router
from webui.api.queue_routes import paused_json
from webui.api.rest import create_rest_api
from webui.engine import Engine
from webui.http_guard import BodyLimit, SecurityHeaders, allowed_hosts
from webui.inputs import input_store
from webui.jobs.recovery import delete_older_than, rebuild, recover
from webui.jobs.runners import LocalRunner, Runner
from webui.jobs.service import JobService
from webui.jobs.store import JobStore
from webui.keys import UrlKey
from webui.loras import LoraLibrary
from webui.metrics import Metrics, RequestCounter
from webui.outputs import replace_atomically
from webui.request import GenerationRequest
from webui.settings import Settings, env_name
from webui.streams import EndStreamsOnShutdown, Shutdown
from webui.ui import PAGE_SCRIPT, Page, create_demo
from webui.ui.i18n import I18N
from webui.uploads import UploadGate, Uploads
from webui.words import words

logger = logging.getLogger(__name__)

# Seconds uvicorn waits for open connections after SIGTERM; below Supervisor's stopwaitsecs.
SHUTDOWN_GRACE_S = 10
JOBS_PUT_DOWN_S = 10  # then, for running jobs to record where they stopped
RETENTION_INTERVAL_S = 3600
# Pages that may follow their jobs at once, beyond the worker threads (each a sleeping coroutine).
FOLLOWING_PAGES = 1000
# Smallest per-file limit of Gradio's uploads (a prompt file or one of our PNGs); input images
# raise it to their own limit, and the upload request's limit to that of an API request with images.
MIN_UPLOAD = 2_000_000
QUEUE_LOOK_S, PROGRESS_LOOK_S = 0.02, 0.05  # Gradio's queue, when idle (create_app says why)
UPLOAD_BODY_LIMIT = 16_000_000  # one upload request: a few such files with their form fields


@dataclass(frozen=True)
class Backend:
    """What makes the images, as the server sees it."""

    runner: Runner
    validate: Callable[[GenerationRequest], object]
    label: str  # the model, as jobs and PNGs name it
    is_demo: bool
    local: bool  # images made in this process: a crash of it may be a job's doing
    loras: LoraLibrary | None = None  # the library, checking files against the model's layers


def embedded(engine: Engine) -> Backend:
    """The default: this process's engine makes the images."""
    model = engine.model
    runner = LocalRunner(engine, input_store(engine.settings.state_path))
    # One library with the lane: each file is read and hashed once in this process.
    return Backend(runner, engine.validate, model.label, model.is_demo, True, engine.loras)


def open_jobs(backend: Backend, settings: Settings) -> JobService:
    """The job service on the backend: the database opened (rebuilt from the manifests if it was
    lost), and the jobs of the last run taken up again."""
    store = JobStore(settings.state_path)
    if store.is_new:
        rebuild(store, settings.output_dir)
    b = backend
    service = JobService(store, b.runner, settings, b.validate, b.label, b.is_demo, b.loras)
    service.start(recover(store, max_resumes=settings.crash_resumes, count_crashes=b.local))
    return service


def lora_upload_limit(settings: Settings, login_on: bool) -> int:
    """Bytes of a LoRA file an admin may add from the page (a multipart envelope's worth more);
    0 without a login: then no one is an admin."""
    return int(settings.max_lora_mb * 1_000_000) + 65536 if login_on else 0


def create_app(service: JobService, backend: Backend, settings: Settings, shutdown: Shutdown) -> FastAPI:
    """The ASGI app: `/healthz` plus the Gradio page at `/`, behind the HTTP guards."""
    access = Access(settings, settings.state_path)
    login_on = access.login_on  # as at start-up: the page's login is made once
    uploads = Uploads(access, settings.cache_max_age)
    page = Page(service, settings, access, uploads)
    demo = create_demo(page, backend.label, backend.is_demo, browser_key(settings.state_path))
    # Outputs are served from where the jobs wrote them, not copied into Gradio's cache once
    # more per request (the folder is in allowed_paths below either way).
    gr.set_static_paths([settings.output_dir])
    # Gradio's queue processes at most `max_threads` events at once, whether they use a thread
    # or not. A page following its job is an async event that sleeps between looks: it needs
    # an event slot but no thread. So the queue gets room for many of those on top of the
    # threads, and the thread limiter (made at start-up from max_threads) stays at the setting.
    demo.max_threads = settings.max_threads + FOLLOWING_PAGES
    # api_open=False: the REST route of a queued event refuses direct calls. Gradio's queue has
    # no size of its own: our job queue is the limit.
    demo.queue(api_open=False, default_concurrency_limit=settings.max_threads)
    # When idle, Gradio's queue looks for new events every 1 ms and for progress every 10 ms
    # (on Linux): about 4% of a core on a server doing nothing (measured). Every 20 and 50 ms
    # costs an event at most 20 ms more to start; progress shows as often as anyone sees.
    demo._queue.sleep_when_free = QUEUE_LOOK_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_LOOK_S
    demo.max_threads = settings.max_threads
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics(service, access)
    engine = getattr(service.runner, "engine", None)  # embedded mode: calls are seen here
    if engine is not None:
        engine.stats.observers.append(metrics.observe_call)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_host, registry=metrics.registry)
    # Middleware runs last-added first: headers, host, size, login, then uploads, streams and CORS.
    # No origin but the app's own: the page is same-origin, and Gradio's own CORS rules would
    # let any web page call the API once the server listens beyond localhost.
    app.add_middleware(CORSMiddleware, allow_origins=[])
    app.add_middleware(EndStreamsOnShutdown, shutdown=shutdown)  # open pages hold up no restart
    limit = int(settings.max_request_mb * 1_000_000)
    image_limit = int(settings.max_input_request_mb * 1_000_000)
    upload_limit = max(UPLOAD_BODY_LIMIT, image_limit)  # anyone's upload request
    admin_lora = lora_upload_limit(settings, login_on)  # an admin's LoRA file
    admin_upload_limit = max(upload_limit, admin_lora)
    app.add_middleware(UploadGate, uploads=uploads, limit=upload_limit)
    app.add_middleware(LoginGuard, access=access, login_on=login_on)
    app.add_middleware(BodyLimit, limit=limit, upload_limit=admin_upload_limit, image_limit=image_limit)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    app.add_middleware(RequestCounter, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    lifetime = settings.url_expiry_days * 86400
    add_apis(app, ApiContext(service, access, UrlKey(settings.state_path), lifetime))

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        """Prometheus' text format; with a login on, for a person's API key (bearer)."""
        if login_on and access.person_of(request.headers.get("authorization")) is None:
            return JSONResponse({"error": {"message": words("api_key_needed").say()}}, 401)
        return Response(await asyncio.to_thread(metrics.text), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # Async and lock-light: it answers from the event loop even while a batch runs.
        queued, running = service.counts()
        extra = service.runner.health()
        paused = service.paused()
        problem = extra.pop("problem", None)
        return JSONResponse(
            status_code=503 if problem else 200,
            content={
                "status": "stopping" if service.closing else problem or "ok",
                "model": backend.label,
                "demo": backend.is_demo,
                "queue_length": queued,  # jobs waiting their turn
                "jobs_queued": queued,
                "jobs_running": running,
                "paused": paused_json(paused),
                **extra,
            },
        )

    # Checked at each login, so that people added later can log in without a restart; with no
    # login on at start-up the page stays open (adding the first person then needs a restart).
    gr.mount_gradio_app(
        app,
        demo,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        auth=access.check_login if login_on else None,
        allowed_paths=[str(settings.output_dir)],
        # Per file: an admin's LoRA file; anyone else's whole upload stops at the gate's limit.
        max_file_size=max(MIN_UPLOAD, int(settings.max_input_mb * 1e6), admin_lora),
        show_error=False,  # a gr.Error's words reach the page; no other exception's do
        ssr_mode=False,
        enable_monitoring=False,
        js=PAGE_SCRIPT,
        i18n=I18N,
        footer_links=["api"],
        # Gradio's run-history page keeps runs in the browser and offers to send them off the
        # server (a Hugging Face bucket): off unless an admin turns it on.
        run_history=settings.run_history,
    )
    # Mounted, Gradio skips its own check that an event's files are uploads (it runs once
    # `launch()` has): turned on, as a second line behind UploadGate.
    demo.has_launched = True
    access.gradio = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    return app


def add_apis(app: FastAPI, ctx: ApiContext) -> None:
    """REST jobs under /api/v1 and OpenAI's images route, before the page takes the rest."""
    app.mount("/api/v1", create_rest_api(ctx))
    app.include_router(openai_router(ctx))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_openai_body(exc)  # the only validated route of this app is OpenAI's


def browser_key(state_dir: Path) -> str:
    """A key made once per installation, for the browser's id in its local storage."""
    path = state_dir / "browser-key"
    if not path.is_file():
        state_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(16).encode()
        replace_atomically(path, lambda handle: handle.write(key), mode=0o600)  # never readable by others
    return path.read_text().strip()


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn's reading of X-Forwarded-For: only from the proxies the setting lists. (Left to
    itself, uvicorn believes any request from 127.0.0.1.)"""
    return {"proxy_headers": bool(settings.proxies), "forwarded_allow_ips": settings.proxies}


def warn_if_exposed(settings: Settings) -> None:
    if settings.exposed and not Access(settings, settings.state_path).login_on:
        logger.warning(
            "Listening on %s without a login: anyone who can reach port %d can generate images. "
            "Add people (python -m webui.users add NAME) or set %s and %s to require one.",
            settings.host,
            settings.port,
            env_name("auth_user"),
            env_name("auth_password"),
        )


class _Server(uvicorn.Server):
    """uvicorn, plus: close the job service on SIGTERM/SIGINT, and say when the port is bound."""

    def __init__(self, config: uvicorn.Config, service: JobService, label: str, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.service, self.label, self.streams = service, label, shutdown

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        logger.info(
            "Signal %d: no new work; running jobs stop at their next step and resume at the next start", sig
        )
        self.service.close()
        self.streams.begin()  # open pages' streams end in a moment: the restart waits for none
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        logger.info("Server stopped")  # uvicorn then re-raises the signal to exit with it

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            cfg = self.config
            logger.info("Serving %s on http://%s:%d", self.label, cfg.host, cfg.port)


def start_retention(service: JobService, settings: Settings) -> None:
    """Delete old jobs now and then hourly, on a daemon thread, when retention is set."""
    if not settings.retention_days:
        return

    def run() -> None:
        while True:
            try:
                delete_older_than(
                    service.store,
                    settings.output_dir,
                    settings.retention_days,
                    datetime.now(UTC),
                    service.inputs,
                )
            except OSError as exc:  # a folder that cannot be removed now may be removable later
                logger.error("Retention failed in %s: %s", settings.output_dir, exc)
            time.sleep(RETENTION_INTERVAL_S)

    threading.Thread(target=run, name="retention", daemon=True).start()


def serve(backend: Backend, settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT."""
    warn_if_exposed(settings)
    service = open_jobs(backend, settings)
    start_retention(service, settings)
    shutdown = Shutdown()
    config = uvicorn.Config(
        create_app(service, backend, settings, shutdown),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our logging configuration, to stdout
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        **proxy_options(settings),
    )
    try:
        _Server(config, service, backend.label, shutdown).run()
    finally:
        service.close()
        service.join(JOBS_PUT_DOWN_S)
