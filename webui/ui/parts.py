"""What the page's parts share: components by name, the options of light events, and the
language of the page asking."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.words import Words, language_of, say

Parts = dict[str, Any]  # a part's components by name
# Light events read memory or disk: not queued, no progress shown, not in the API.
QUIET: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}


def language(request: gr.Request | None) -> str:
    """The language of the page asking: its browser's first choice (English for scripts)."""
    return language_of(request.headers.get("accept-language") if request is not None else None)


def error(thing: Words | BaseException, request: gr.Request | None) -> gr.Error:
    """A message for the page that asked, in its language."""
    return gr.Error(say(thing, language(request)))
