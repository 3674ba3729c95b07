"""What the page's parts share: components by name, the options of light events, and the
language of the page asking."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.words import Words, language_of, say

Parts = dict[str, Any]  # a part's components by name
# Light events read memory or disk: no progress shown, not in the API. Queued like every
# event: Gradio's direct route answers any exception with 500 and its text, the queue with a
# message (ours, from gr.Error) and no status code, and it refuses direct calls (api_open=False).
QUIET: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}
# For events whose inputs include a Radio or Dropdown: their values reach the handler as sent,
# and the handler checks them in our words (Gradio's own check words a value the page cannot
# send, a script's, with Python's reprs: "(type: <class 'str'>)").
RAW: dict[str, Any] = {"preprocess": False}


def language(request: gr.Request | None) -> str:
    """The language of the page asking: its browser's first choice (English for scripts)."""
    return language_of(request.headers.get("accept-language") if request is not None else None)


def error(thing: Words | BaseException, request: gr.Request | None) -> gr.Error:
    """A message for the page that asked, in its language."""
    return gr.Error(say(thing, language(request)))


def last_cell(event: gr.SelectData) -> Any:
    """The last cell of a table row picked (where our tables keep the job id); None if the
    event names no row."""
    row = event.row_value
    return row[-1] if isinstance(row, list) and row else None
