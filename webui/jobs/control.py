"""Whether the queue is paused, by whom and since when.

Kept in a small file in the state folder (`queue.json`), so that a pause survives a restart
and the command line (`python -m webui.queue`, which needs no login, only the server's
folder) can pause and resume a running server. The server looks at the file's modification
time once a second (a stat, no read) and applies a change at once: no new job is handed to the
runner, and the lane starts no new pipeline call; the call running finishes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from webui.outputs import replace_atomically

logger = logging.getLogger(__name__)

FILE = "queue.json"


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
