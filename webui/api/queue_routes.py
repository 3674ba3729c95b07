"""The queue's controls for admins over REST (the page's Queue panel has the same):

GET    /api/v1/queue                  paused or not (by whom, since when), jobs waiting and running
POST   /api/v1/queue/pause            running calls finish, nothing new starts
POST   /api/v1/queue/resume
POST   /api/v1/jobs/{id}/move         {"to": "front" | "up" | "down"}

Anyone may look; the rest answers 403 for people who are not admins.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict

from webui.api.common import ApiContext, refusal
from webui.jobs.views import Identity
from webui.words import Message


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Literal["front", "up", "down"]


def add_queue_routes(api: FastAPI, ctx: ApiContext, caller: Depends) -> None:
    service = ctx.service

    def state() -> dict[str, Any]:
        queued, running = service.counts()
        paused = paused_json(service.paused())
        return {"paused": paused, "jobs_queued": queued, "jobs_running": running}

    @api.get("/queue")
    async def queue(who: Identity = caller) -> dict[str, Any]:
        """Whether the queue is paused (by whom, since when), and its jobs waiting and running."""
        return state()

    @api.post("/queue/pause")
    async def pause(who: Identity = caller) -> dict[str, Any]:
        """Admins: the running pipeline call finishes, no new one starts until resumed (kept
        across restarts)."""
        with _refusals():
            service.pause(who)
        return state()

    @api.post("/queue/resume")
    async def resume(who: Identity = caller) -> dict[str, Any]:
        """Admins: the queue goes on."""
        with _refusals():
            service.resume(who)
        return state()

    @api.post("/jobs/{job_id}/move")
    async def move(job_id: str, body: MoveIn, who: Identity = caller) -> dict[str, Any]:
        """Admins: a job to the front of the queue, or one place up or down; the queue's order
        after it (job ids)."""
        with _refusals():
            service.move(job_id, body.to, who)
        return {"order": [view.id for view in service.views()]}


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The service's refusals as HTTP errors (403 for someone who is not an admin)."""
    try:
        yield
    except Message as exc:
        raise refusal(exc) from None


def paused_json(paused: Any) -> dict[str, str] | None:
    """The service's pause (by, since), or None, as JSON."""
    return None if paused is None else {"by": paused.by, "since": paused.since.isoformat()}
