"""Past requests, read back from the manifests on disk (so the history survives restarts),
and the retention that deletes old ones.

Each request folder is `<output dir>/YYYY-MM-DD/HHMMSS-<id>/` with a `manifest.json` that the
engine writes when the request ends. A folder without one (a request still running, or files
that are not ours) is never listed and never deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from webui.outputs import MANIFEST_NAME

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PastRequest:
    folder: Path
    manifest: dict[str, Any]
    created: datetime

    @property
    def image_paths(self) -> list[Path]:
        """The request's images still on disk, in prompt-then-variant order."""
        paths = (self.folder / image["file"] for image in self.manifest["images"])
        return [path for path in paths if path.is_file()]


def past_requests(output_dir: Path, limit: int | None = None) -> list[PastRequest]:
    """Requests with a readable manifest, newest first; at most `limit` of them."""
    found = []
    for path in output_dir.glob(f"*/*/{MANIFEST_NAME}"):
        try:
            manifest = json.loads(path.read_text("utf-8"))
            created = datetime.fromisoformat(manifest["created"])
            if not isinstance(manifest.get("images"), list):
                raise ValueError("no list of images")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Skipping %s in the history: %s", path, exc)
            continue
        found.append(PastRequest(path.parent, manifest, created))
    found.sort(key=lambda request: request.created, reverse=True)
    return found[:limit]


def delete_older_than(output_dir: Path, days: int, now: datetime) -> int:
    """Delete the request folders whose manifest is more than `days` days older than `now`
    (timezone-aware), then day folders left empty; return how many requests went."""
    cutoff = now - timedelta(days=days)
    removed = 0
    for request in past_requests(output_dir):
        if request.created < cutoff:
            shutil.rmtree(request.folder)
            removed += 1
    for day in output_dir.glob("*/"):
        if not any(day.iterdir()):
            day.rmdir()
    if removed:
        logger.info("Retention: deleted %d requests older than %d days from %s", removed, days, output_dir)
    return removed
