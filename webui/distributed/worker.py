"""A GPU worker: `python -m webui.distributed.worker [--name NAME] [--setting value ...]`.

One Celery worker process per GPU (Supervisor starts them: `./launch.sh worker`). It loads the
pipeline once and serves its model's queue with a pool of threads that all feed our one lane
(webui/lane/), so that tasks of several jobs share pipeline calls; there is no fork after
CUDA is up. Prefetch is one task per thread and tasks are acknowledged when done, so a task
of a worker that dies goes back to the queue for another (after ZIMAGE_TASK_TIMEOUT).

Exit status as for the web server: 2 bad setting, 3 model not loaded, 70 stalled call.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webui.loading import ModelLoader

logger = logging.getLogger("webui.worker")


def main(argv: list[str] | None = None, load_model: ModelLoader | None = None) -> int:
    """`load_model`: what loads the model, webui.loading's unless a test or tool passes its own."""
    parser = argparse.ArgumentParser(prog="python -m webui.distributed.worker", allow_abbrev=False)
    parser.add_argument("--name", default="worker", help="worker name; @host is added")
    own, rest = parser.parse_known_args(argv)
    from webui.settings import Settings, SettingsError, env_name, hide_password

    try:
        settings = Settings.from_sources(rest, os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.broker_url:
        print(f"error: set {env_name('broker_url')} to the Redis URL of the broker", file=sys.stderr)
        return 2
    from webui.log import configure_logging

    configure_logging(settings.log_level)
    from celery.signals import worker_ready

    from webui import loading
    from webui.distributed.broker import TASK_NAME, celery_app
    from webui.distributed.tasks import WorkerState
    from webui.engine import Engine
    from webui.lane.watchdog import exit_for_supervisor
    from webui.preflight import ModelLoadError

    try:
        model = (load_model or loading.load_model)(settings)
    except ModelLoadError as exc:
        logger.error("%s", exc)
        return 3
    name = f"{own.name}@{socket.gethostname()}"
    state = WorkerState(Engine(model, settings, on_stuck=exit_for_supervisor), settings, name)
    app = celery_app(settings.broker_url, settings.task_timeout)
    app.task(name=TASK_NAME, bind=False)(state.make)
    # Heartbeats (and Stop flags) once the worker takes tasks: online means ready.
    worker_ready.connect(
        lambda **_: threading.Thread(target=state.watch, name="watch", daemon=True).start(), weak=False
    )
    logger.info(
        "Worker %s: %s on %s, queue %s at %s",
        name,
        state.model,
        model.device,
        state.queue,
        hide_password(settings.broker_url),
    )
    slots = 2 * settings.max_batch_size if settings.cross_batching else 1
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={slots}",
                f"--queues={state.queue}",
                f"--hostname={name}",
                f"--loglevel={settings.log_level}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        state.forget()
    return 0


if __name__ == "__main__":
    sys.exit(main())
