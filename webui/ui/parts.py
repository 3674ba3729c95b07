"""What the page's parts share: components by name, and the options of light events."""

from __future__ import annotations

from typing import Any

Parts = dict[str, Any]  # a part's components by name
# Light events read memory or disk: not queued, no progress shown, not in the API.
QUIET: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
