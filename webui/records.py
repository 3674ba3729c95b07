"""A small table of records in a JSON file under the state folder: written atomically with
mode 600 (it holds password and key hashes), read again only when the file changed, so that
a change made by the command line reaches a running server without a restart."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from webui.outputs import replace_atomically


class RecordFile:
    """name -> record (a dict of JSON values), as one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None  # the file's mtime and size when read
        self._records: dict[str, dict[str, Any]] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        """The records as the file holds them now (a copy)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._records = None, {}
                return {}
            if (stat.st_mtime, stat.st_size) != self._seen:
                self._records = json.loads(self.path.read_text("utf-8"))
                self._seen = (stat.st_mtime, stat.st_size)
            return {name: dict(record) for name, record in self._records.items()}

    def write(self, records: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(records, indent=2, sort_keys=True).encode()
        replace_atomically(self.path, lambda handle: handle.write(text), mode=0o600)
