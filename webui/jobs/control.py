"""Running the queue: whether it is paused (by whom, since when), and the admins' controls.

Kept in a small file in the state folder (`queue.json`), so that a pause survives a restart
and the command line (`python -m webui.queue`, which needs no login, only the server's
folder) can pause and resume a running server. The server looks at the file's modification
time once a second (a stat, no read) and applies a change at once: no new job is handed to the
runner, and the lane starts no new pipeline call; the call running finishes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.jobs.views import Identity
from webui.outputs import replace_atomically
from webui.request import RequestError

if TYPE_CHECKING:
    from webui.jobs.changes import Changes
    from webui.jobs.runners import Runner

logger = logging.getLogger(__name__)

FILE = "queue.json"
PAUSE_LOOK_S = 1.0  # how often queue.json is looked at (a stat)
MOVES = ("front", "up", "down")


@dataclass(frozen=True)
class Paused:
    by: str  # who paused it: a person's name, or "command line"
    since: datetime


class QueueControl:
    """The pause state of one state folder."""

    def __init__(self, state: Path) -> None:
        self.path = state / FILE
        self._seen: tuple[tuple[int, int], Paused | None] | None = None  # ((mtime, inode), state)

    def paused(self) -> Paused | None:
        """The pause in force, if any (read again only when the file changed)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        version = (stat.st_mtime_ns, stat.st_ino)  # each write is a new file: a new inode
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, self._read())
        return self._seen[1]

    def pause(self, by: str) -> Paused:
        current = self.paused()
        if current is not None:
            return current
        paused = Paused(by, datetime.now(UTC))
        self._write({"paused": True, "by": by, "since": paused.since.isoformat()})
        logger.info("Queue paused by %s", by)
        return paused

    def resume(self, by: str) -> None:
        if self.paused() is not None:
            self._write({"paused": False, "by": by, "since": datetime.now(UTC).isoformat()})
            logger.info("Queue resumed by %s", by)

    def _read(self) -> Paused | None:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if not data.get("paused"):
                return None
            return Paused(str(data.get("by", "?")), datetime.fromisoformat(data["since"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A file we cannot read: paused, and said so (running on by mistake is worse).
            logger.error("%s cannot be read (%s): the queue stays paused until it is fixed", self.path, exc)
            return Paused("an unreadable queue.json", datetime.now(UTC))

    def _write(self, data: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(self.path, lambda f: f.write(json.dumps(data).encode()))


class QueueControls:
    """The admins' controls of the job service (webui/jobs/service.py), mixed into it: pause
    and resume (queue.json, which the command line may also write: looked at once a second),
    and the order of the queue. They use the service's lock, its jobs in queue order, its
    runner and its change counter."""

    control: QueueControl
    changes: Changes
    runner: Runner
    _lock: threading.Condition
    _live: dict[str, Any]
    _paused: bool
    _closing: bool

    def _pump(self) -> None: ...

    def paused(self) -> Paused | None:
        """The pause in force, if any: by whom, since when."""
        return self.control.paused()

    def pause(self, who: Identity) -> Paused:
        _admin(who)
        paused = self.control.pause(who.label)
        self._apply_pause()
        return paused

    def resume(self, who: Identity) -> None:
        _admin(who)
        self.control.resume(who.label)
        self._apply_pause()

    def move(self, job_id: str, where: str, who: Identity) -> None:
        """A job to the front of the queue, or one place up or down; the runner follows the
        new order at its next call."""
        _admin(who)
        if where not in MOVES:
            raise RequestError("bad_move", where=str(where)[:20], moves=", ".join(MOVES))
        with self._lock:
            if job_id not in self._live:
                raise RequestError("no_job_id", job=str(job_id)[:40])
            order = list(self._live)
            n = order.index(job_id)
            order.remove(job_id)
            order.insert({"front": 0, "up": max(0, n - 1), "down": n + 1}[where], job_id)
            self._live = {key: self._live[key] for key in order}
            logger.info("job %s moved %s by %s", job_id, where, who.label)
        self.runner.reorder(order)  # outside our lock: the lane has its own
        with self._lock:
            self._pump()
        self.changes.bump()

    def _apply_pause(self) -> None:
        """The pause state as the file has it now, applied to the runner and the queue."""
        paused = self.control.paused() is not None
        if paused == self._paused:
            return
        self.runner.pause(paused)  # outside our lock: the lane has its own
        with self._lock:
            self._paused = paused
            self._pump()
        self.changes.bump()

    def _follow_pause(self) -> None:
        while not self._closing:
            self._apply_pause()
            time.sleep(PAUSE_LOOK_S)


def _admin(who: Identity) -> None:
    if not who.admin:
        raise RequestError("admins_only")
