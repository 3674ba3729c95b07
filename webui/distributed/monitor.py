"""What the web host knows of the world outside it: whether the broker answers, and which
workers are online for which model. A daemon thread looks once a second; the page, /healthz
and the runner read what it saw last, without waiting on Redis."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from typing import Any

import redis
from kombu.exceptions import OperationalError

from webui.distributed import broker
from webui.distributed.broker import WorkerInfo

logger = logging.getLogger(__name__)

MONITOR_S = 1.0  # how often the broker and the workers are looked at
BROKER_ERRORS = (redis.RedisError, OperationalError, OSError)


class Monitor:
    """The broker's health and the workers online, as last seen."""

    def __init__(self, client: redis.Redis, model: str, broker_label: str) -> None:
        self.redis, self.model, self.broker = client, model, broker_label
        self._workers: list[WorkerInfo] = []
        self._broker_error: str | None = None
        threading.Thread(target=self._watch, name="broker-monitor", daemon=True).start()

    def serving(self, model: str | None = None) -> list[WorkerInfo]:
        """Workers online for `model` (a model key; by default this host's)."""
        return [w for w in self._workers if w.model == (model or self.model)]

    def models(self) -> list[str]:
        """The model keys of every worker online."""
        return sorted({w.model for w in self._workers})

    def seconds_per_unit(self) -> float | None:
        """Seconds per pixel-step of all serving workers together, for ETAs."""
        rates = [w.seconds_per_unit for w in self.serving() if w.seconds_per_unit]
        return 1.0 / sum(1.0 / r for r in rates) if rates else None

    def notice(self) -> str | None:
        """Why jobs are not moving, if something outside this host is missing."""
        if self._broker_error is not None:
            return f"The broker ({self.broker}) is unreachable; jobs wait until it is back."
        if not self.serving():
            others = sorted({w.model for w in self._workers})
            also = f" (workers online serve {', '.join(others)})" if others else ""
            return f"No GPU worker is online for {self.model}{also}; jobs wait until one starts."
        return None

    def health(self) -> dict[str, Any]:
        workers = self._workers
        return {
            "problem": "broker unreachable" if self._broker_error else None,
            "mode": "distributed",
            "broker": self.broker,
            "broker_error": self._broker_error,
            "notice": self.notice(),
            "workers": [asdict(w) for w in workers],
            "busy": any(w.busy for w in workers),
            "call_running": any(w.busy for w in workers),  # as the workers last said
            "calls": {
                "count": sum(w.calls for w in workers),
                "images": sum(w.images for w in workers),
                "busy_s": round(sum(w.busy_s for w in workers), 3),
            },
        }

    def broker_down(self, exc: Exception) -> None:
        if self._broker_error is None:
            logger.error("The broker %s is unreachable (%s); jobs wait for it", self.broker, exc)
        self._broker_error = f"{type(exc).__name__}: {exc}"

    def broker_up(self) -> None:
        if self._broker_error is not None:
            logger.info("The broker %s answers again", self.broker)
        self._broker_error = None

    def _watch(self) -> None:
        while True:
            try:
                self._workers = broker.workers(self.redis)
                self.broker_up()
            except BROKER_ERRORS as exc:
                self.broker_down(exc)
                self._workers = []
            time.sleep(MONITOR_S)
