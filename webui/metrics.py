"""Prometheus metrics, through `prometheus-client`, for the monitoring a team already runs.

GET /metrics on the app (behind the login like the rest: a person's API key as a bearer token,
which Prometheus sends with `authorization: {credentials: ...}`), or on a port of its own
(ZIMAGE_METRICS_PORT, on ZIMAGE_METRICS_HOST) for a Prometheus that cannot log in.

Series (all `zimage_`):
- jobs{status}: jobs queued and running now, and done/stopped/failed in the database;
- queue_depth, queue_oldest_wait_seconds, queue_paused;
- images_total: images made (embedded: this process's lane; distributed: the workers online);
- pipeline_call_seconds{kind,size} (histogram), idle_gap_seconds (between back-to-back calls
  while work waited), images_per_call (histogram): observed on this process's lane, so in
  embedded mode (workers' calls are not seen on the web host);
- workers_online, workers_busy (distributed mode, from the web host's monitor);
- failed_logins_total, api_requests_total{route,code}.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.access import Access
from webui.jobs.record import QUEUED
from webui.jobs.service import JobService

CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)  # seconds of one call
GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
IMAGE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
API_PREFIXES = ("/api/", "/v1/")
# Parts of a path that name one thing: counted as the route they belong to.
ROUTE_PARTS = (
    (re.compile(r"/jobs/[^/]+"), "/jobs/{id}"),
    (re.compile(r"/images/[^/]+\.png$"), "/images/{n}.png"),
)


class Metrics:
    """The registry of one app: what the lane reports as it goes, and what is read at scrape."""

    def __init__(self, service: JobService, access: Access) -> None:
        self.registry = CollectorRegistry()
        self.calls = Histogram(
            "zimage_pipeline_call_seconds",
            "Seconds of each pipeline call, by kind of call and size (WxH).",
            ["kind", "size"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.gaps = Histogram(
            "zimage_idle_gap_seconds",
            "The GPU's idle time between two calls while work waited.",
            buckets=GAP_BUCKETS,
            registry=self.registry,
        )
        self.per_call = Histogram(
            "zimage_images_per_call",
            "Images in each pipeline call.",
            buckets=IMAGE_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "zimage_api_requests",
            "API requests, by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.registry.register(_Now(service, access))

    def observe_call(self, shape: Any, images: int, seconds: float, gap: float | None) -> None:
        """A finished pipeline call (the lane's observer, on its thread)."""
        self.calls.labels(shape.kind, f"{shape.width}x{shape.height}").observe(seconds)
        self.per_call.observe(images)
        if gap is not None:
            self.gaps.observe(gap)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _Now(Collector):
    """What is read when Prometheus scrapes: the queue, the database, workers, logins."""

    def __init__(self, service: JobService, access: Access) -> None:
        self.service, self.access = service, access

    def collect(self) -> Iterator[Any]:
        service = self.service
        queued, running = service.counts()
        jobs = GaugeMetricFamily(
            "zimage_jobs", "Jobs by status (queued, running now; others in all).", labels=["status"]
        )
        counts = service.store.status_counts()
        for status in ("done", "stopped", "failed"):
            jobs.add_metric([status], counts.get(status, 0))
        jobs.add_metric(["queued"], queued)
        jobs.add_metric(["running"], running)
        yield jobs
        yield GaugeMetricFamily("zimage_queue_depth", "Jobs waiting their turn.", value=queued)
        views = [v for v in service.views() if v.status == QUEUED]
        record = service.record(views[0].id) if views else None
        oldest = 0.0 if record is None else max(0.0, time.time() - record.created.timestamp())
        yield GaugeMetricFamily(
            "zimage_queue_oldest_wait_seconds", "How long the oldest waiting job waited.", value=oldest
        )
        paused = 1.0 if service.paused() is not None else 0.0
        yield GaugeMetricFamily("zimage_queue_paused", "1 while an admin has the queue paused.", value=paused)
        health = service.runner.health()
        images = health.get("calls", {}).get("images", 0)
        yield CounterMetricFamily("zimage_images", "Images made.", value=images)
        if health.get("mode") == "distributed":
            workers = health.get("workers", [])
            yield GaugeMetricFamily("zimage_workers_online", "GPU workers online.", value=len(workers))
            busy = sum(bool(w.get("busy")) for w in workers)
            yield GaugeMetricFamily("zimage_workers_busy", "GPU workers making images now.", value=busy)
        yield CounterMetricFamily(
            "zimage_failed_logins", "Failed page logins.", value=self.access.failed_logins
        )


class RequestCounter:
    """ASGI middleware: each API request counted by its route and status code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        code = 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(path) if code != 404 else "unknown"  # no series per made-up path
            self.metrics.requests.labels(route, str(code)).inc()


def route_of(path: str) -> str:
    """A path as the route it belongs to: ids and image numbers folded, so that the series stay few."""
    for pattern, shown in ROUTE_PARTS:
        path = pattern.sub(shown, path)
    return path.rstrip("/")[:100] or "/"
