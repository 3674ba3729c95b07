"""What the web host and the GPU workers share: the Celery app, Redis keys and messages.

Celery carries the tasks (JSON only: a pickle from Redis would run code on every worker);
a task holds at most one call's worth of a job's images, each with its planned seed and its
PNG's metadata. Workers answer through one Redis list per job (events: started, progress,
an image's PNG bytes, a black image, done, failed), which the web host reads and trims only
after acting on them, so that nothing is lost when it restarts. Workers say they are alive in
one Redis hash, which `/healthz` and the page read.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

import redis
from celery import Celery

TASK_NAME = "zimage.make"
MESSAGE_VERSION = 1
KEY_PREFIX = "zimage"
WORKERS_KEY = f"{KEY_PREFIX}:workers"  # hash: worker name -> WorkerInfo as JSON
HEARTBEAT_S = 2.0  # how often a worker says it is alive
ONLINE_S = 10.0  # a worker not heard from for this long is offline
EVENTS_KEPT_S = 7 * 24 * 3600  # an abandoned job's events expire after this
# Workers a task may lose (killed mid-task, the process gone) before it is refused for good.
MAX_WORKER_LOSSES = 3


def events_key(job_id: str) -> str:
    return f"{KEY_PREFIX}:events:{job_id}"


def tasks_key(job_id: str) -> str:
    """Hash: the job's outstanding task ids -> their image indexes (JSON)."""
    return f"{KEY_PREFIX}:tasks:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"{KEY_PREFIX}:cancel:{job_id}"


def input_key(digest: str) -> str:
    """An input image's PNG, by its content hash: how workers get the jobs' inputs (no shared
    folder assumed); each worker keeps what it fetched in its own state folder."""
    return f"{KEY_PREFIX}:input:{digest}"


def lora_key(digest: str) -> str:
    """A LoRA file's bytes, by SHA-256, put there by the web host for workers that lack it."""
    return f"{KEY_PREFIX}:lora:{digest}"


def starts_key(task_id: str) -> str:
    """How many times a task was started without finishing: its workers died under it."""
    return f"{KEY_PREFIX}:starts:{task_id}"


def model_key(label: str, dtype: str) -> str:
    """What a task needs and a worker serves: the weights and their precision."""
    return f"{label} ({dtype})"


def queue_for(model: str) -> str:
    """The Celery queue of one model key: a worker only ever takes its own model's tasks."""
    return "zimage." + re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")


def celery_app(broker_url: str, task_timeout: int) -> Celery:
    """The Celery app of both sides, configured for long GPU tasks on Redis."""
    app = Celery("zimage", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results travel as events; no result backend
        task_acks_late=True,  # a task is acknowledged when done: a dead worker's task is not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # reserve no more than the pool threads can hold
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis to come back
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        broker_transport_options={
            # Unacknowledged tasks (their worker died) go back to the queue after this long, so
            # it must exceed the longest task; the sweep for them runs every few seconds.
            "visibility_timeout": task_timeout,
            "unacked_restore_interval": max(1, min(10, task_timeout // 4)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
        },
    )
    if broker_url.startswith("rediss://"):  # TLS: verify the server's certificate, never skip it
        app.conf.broker_use_ssl = tls_options(broker_url)
    return app


def tls_options(broker_url: str) -> dict[str, Any]:
    """Certificate checks for a rediss:// broker: the system's CAs, or `?ssl_ca_certs=FILE`."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(broker_url).query)
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if "ssl_ca_certs" in query:
        options["ssl_ca_certs"] = query["ssl_ca_certs"][0]
    return options


def redis_client(broker_url: str) -> redis.Redis:
    """A client for the broker's Redis, failing fast when it is unreachable."""
    return redis.Redis.from_url(
        broker_url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15
    )


def pack_event(kind: str, task_id: str, data: bytes = b"", **fields: Any) -> bytes:
    """One event: a JSON line, then raw bytes (a PNG) if any."""
    header = json.dumps({"kind": kind, "task": task_id, **fields}, ensure_ascii=False).encode()
    return header + b"\n" + data


def unpack_event(raw: bytes) -> tuple[dict[str, Any], bytes]:
    header, _, data = raw.partition(b"\n")
    return json.loads(header), data


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as it last said it was."""

    name: str
    pid: int
    host: str
    device: str
    model: str
    busy: bool
    images: int  # made since it started
    calls: int
    busy_s: float
    seconds_per_unit: float | None  # recent seconds per pixel-step
    started: float  # time.time()
    last_seen: float
    loras: tuple[str, ...] = ()  # SHA-256 of the LoRA files it has (its folder and fetched copies)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def workers(client: redis.Redis) -> list[WorkerInfo]:
    """Every worker heard from lately, by name; long-gone ones are forgotten. Raises
    redis.RedisError when Redis is unreachable."""
    found, now = [], time.time()
    for name, raw in sorted(client.hgetall(WORKERS_KEY).items()):
        info = WorkerInfo(**json.loads(raw))
        if now - info.last_seen > 24 * 3600:
            client.hdel(WORKERS_KEY, name)
        elif now - info.last_seen <= ONLINE_S:
            found.append(info)
    return found
