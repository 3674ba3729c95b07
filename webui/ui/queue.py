"""The Queue panel: every team member's running and waiting jobs, pushed to the page as they
change (no timer: each open page awaits the queue's next change, webui/jobs/changes.py); a
click on the Stop cell of one of yours stops it. Admins also get Pause / Resume and, for the
job picked by a click on its row, To front / Up / Down; the line above the table says who
paused the queue and since when."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from webui.jobs.views import Identity
from webui.ui import text
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, Parts, error, language, last_cell
from webui.words import Message, words

QUEUE_WAIT_S = 10.0  # an open page's panel looks at the queue when it changes, or after this
# Each page's stream ends after this long and its page's timer starts another: a script that
# opens streams and never closes them holds a slot of the panels' own group for this long at
# most, and no more than PANELS streams run at once (other events have slots of their own).
STREAM_S = 600.0
PANELS = 300


def queue_part() -> Parts:
    c: Parts = {}
    with gr.Accordion(t("queue"), elem_id="queue-panel"):
        c["queue_state"] = gr.Markdown(elem_id="queue-state")
        with gr.Row(visible=False, elem_id="queue-controls") as c["queue_controls"]:  # admins only
            c["queue_pause"] = gr.Button(t("queue_pause"), size="sm", min_width=60, elem_id="queue-pause")
            c["queue_resume"] = gr.Button(t("queue_resume"), size="sm", min_width=60, elem_id="queue-resume")
            c["queue_front"] = gr.Button(t("queue_front"), size="sm", min_width=60, elem_id="queue-front")
            c["queue_up"] = gr.Button(t("queue_up"), size="sm", min_width=60, elem_id="queue-up")
            c["queue_down"] = gr.Button(t("queue_down"), size="sm", min_width=60, elem_id="queue-down")
        c["queue_table"] = gr.Dataframe(
            headers=list(text.QUEUE_COLUMNS),
            interactive=False,
            wrap=True,
            max_height=260,
            elem_id="queue-table",
        )
        c["queue_picked"] = gr.State(None)  # the job an admin picked, by id
    return c


def wire_queue(page: Page, loaded: gr.events.Dependency, c: Parts) -> None:
    """Shown once the page knows who it is (`loaded`), then on every change of the queue."""

    def now(request: gr.Request) -> list[Any]:
        who, lang = page.identity(request), language(request)
        rows = [text.queue_row(v, who, lang) for v in page.service.views()]
        return [text.table(rows, "queue_columns", lang), _state_line(page, lang)]

    async def follow(request: gr.Request) -> AsyncIterator[list[Any]]:
        """The panel, again after each change (the queue's, not a timer's), for STREAM_S; it
        ends sooner when the page closes (Gradio drops the event with its session)."""
        ends = time.monotonic() + STREAM_S
        while True:
            seen = page.service.changes.version
            yield now(request)
            if time.monotonic() >= ends or page.service.closing:  # closing: the page's stream ends
                return
            await page.service.changes.settled(seen, QUEUE_WAIT_S)

    def controls_shown(request: gr.Request) -> Any:
        return gr.Row(visible=page.identity(request).admin)

    def clicked(event: gr.SelectData, request: gr.Request) -> Any:
        """The Stop cell of a job stops it; any other cell picks its job for an admin's moves."""
        job_id = last_cell(event)
        if isinstance(event.index, list) and event.index[1:2] == [text.STOP_COLUMN] and event.value:
            if page.stop_job(job_id, request):
                gr.Info(words("stopping_job", job=job_id).say(language(request)))
            return gr.skip()
        return job_id if isinstance(job_id, str) else gr.skip()

    def control(act: str) -> Any:
        def handler(picked: Any, request: gr.Request) -> None:
            who: Identity = page.identity(request)
            try:
                if act == "pause":
                    page.service.pause(who)
                elif act == "resume":
                    page.service.resume(who)
                elif not isinstance(picked, str):
                    raise Message("pick_job_first")
                else:
                    page.service.move(picked, act, who)
            except Message as exc:
                raise error(exc, request) from None

        return handler

    streamed = {"concurrency_limit": PANELS, "concurrency_id": "queue-panel", **QUIET}
    loaded.then(follow, None, [c["queue_table"], c["queue_state"]], **streamed)
    # A tick's stream ends a little after the next tick (its last wait): that tick must wait
    # for it, not be dropped, or the panel would stand still until the tick after.
    gr.Timer(STREAM_S).tick(
        follow, None, [c["queue_table"], c["queue_state"]], trigger_mode="always_last", **streamed
    )
    loaded.then(controls_shown, None, c["queue_controls"], **QUIET)
    c["queue_table"].select(clicked, None, c["queue_picked"], **QUIET)
    for act in ("pause", "resume", "front", "up", "down"):
        c[f"queue_{act}"].click(control(act), c["queue_picked"], None, **QUIET)


def _state_line(page: Page, lang: str) -> str:
    paused = page.service.paused()
    if paused is None:
        return ""
    return words("queue_paused", by=paused.by, since=f"{paused.since:%Y-%m-%d %H:%M} UTC").say(lang)
