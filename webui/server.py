"""Serving the page: our FastAPI app with `/healthz`, the Gradio Blocks mounted at `/`.

We run uvicorn ourselves rather than `Blocks.launch()` so that the app has a health route
of its own, binds exactly the configured port (a taken port is an error, never a drift to
the next one), and shuts down cleanly on SIGTERM (what `supervisorctl stop` sends): the
engine stops the running request at its next step and refuses new ones, finished images
stay on disk, and uvicorn closes the remaining connections.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime
from types import FrameType

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from webui.engine import Engine
from webui.history import delete_older_than
from webui.settings import Settings, env_name
from webui.ui import create_demo

logger = logging.getLogger(__name__)

# Seconds uvicorn waits for open connections after SIGTERM; below Supervisor's stopwaitsecs.
SHUTDOWN_GRACE_S = 10
RETENTION_INTERVAL_S = 3600
# Largest upload Gradio accepts: the page takes none yet; prompt lists will need little.
MAX_UPLOAD = "2mb"


def create_app(engine: Engine, settings: Settings) -> FastAPI:
    """The ASGI app: `/healthz` plus the queued Gradio page at `/`."""
    demo = create_demo(engine)
    # Outputs are served from where the engine wrote them, not copied into Gradio's cache
    # once more per request (the folder is in allowed_paths below either way).
    gr.set_static_paths([settings.output_dir])
    demo.max_threads = settings.max_threads  # read by queue() and by the app's thread limiter
    # api_open=False: the REST route of a queued event refuses direct calls, so every
    # generation waits its turn in the queue.
    demo.queue(max_size=settings.queue_size, api_open=False, default_concurrency_limit=1)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # No origin but the app's own: the page is same-origin, and Gradio's own CORS rules would
    # let any web page call the API once the server listens beyond localhost.
    app.add_middleware(CORSMiddleware, allow_origins=[])

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # Async and lock-free: it answers from the event loop even while a batch runs.
        last = engine.last_progress_at
        status = "stopping" if engine.closing else "stalled" if engine.stalled else "ok"
        return JSONResponse(
            status_code=503 if status == "stalled" else 200,
            content={
                "status": status,
                "model": engine.model.label,
                "device": str(engine.model.device),
                "demo": engine.model.is_demo,
                "busy": engine.busy,
                # What Gradio's own /queue/status route reports: requests waiting their turn.
                "queue_length": demo._queue.get_status().queue_size,
                "last_progress": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
                # Seconds the running pipeline call has gone without finishing a step.
                "call_quiet_s": round(engine.lane.quiet_for(), 1),
            },
        )

    auth = [(settings.auth_user, settings.auth_password)] if settings.auth_user else None
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        allowed_paths=[str(settings.output_dir)],
        max_file_size=MAX_UPLOAD,
        show_error=True,
        ssr_mode=False,
        enable_monitoring=False,
        footer_links=["api"],
    )


def warn_if_exposed(settings: Settings) -> None:
    if settings.exposed_without_login:
        logger.warning(
            "Listening on %s without a login: anyone who can reach port %d can generate images. "
            "Set %s and %s to require one.",
            settings.host,
            settings.port,
            env_name("auth_user"),
            env_name("auth_password"),
        )


class _Server(uvicorn.Server):
    """uvicorn, plus: close the engine on SIGTERM/SIGINT, and say when the port is bound."""

    def __init__(self, config: uvicorn.Config, engine: Engine) -> None:
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        logger.info("Signal %d: no new work; the running request stops at its next step", sig)
        self.engine.close()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        logger.info("Server stopped")  # uvicorn then re-raises the signal to exit with it

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            cfg = self.config
            logger.info("Serving %s on http://%s:%d", self.engine.model.label, cfg.host, cfg.port)


def start_retention(settings: Settings) -> None:
    """Delete old requests now and then hourly, on a daemon thread, when retention is set."""
    if not settings.retention_days:
        return

    def run() -> None:
        while True:
            try:
                delete_older_than(settings.output_dir, settings.retention_days, datetime.now(UTC))
            except OSError as exc:  # a folder that cannot be removed now may be removable later
                logger.error("Retention failed in %s: %s", settings.output_dir, exc)
            time.sleep(RETENTION_INTERVAL_S)

    threading.Thread(target=run, name="retention", daemon=True).start()


def serve(engine: Engine, settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT."""
    warn_if_exposed(settings)
    start_retention(settings)
    config = uvicorn.Config(
        create_app(engine, settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our logging configuration, to stdout
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    _Server(config, engine).run()
