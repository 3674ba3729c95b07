"""The Queue panel: every team member's running and waiting jobs, refreshed by a timer; a click
on the Stop cell of one of yours stops it."""

from __future__ import annotations

import gradio as gr

from webui.ui import text
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, Parts

REFRESH_S = 1.5  # the panel's timer: one light request per page


def queue_part() -> Parts:
    with gr.Accordion(t("queue"), elem_id="queue-panel"):
        table = gr.Dataframe(
            headers=list(text.QUEUE_COLUMNS),
            interactive=False,
            wrap=True,
            max_height=260,
            elem_id="queue-table",
        )
    return {"queue_table": table}


def wire_queue(page: Page, loaded: gr.events.Dependency, c: Parts) -> None:
    """Filled once the page knows who it is (`loaded`), then on every tick."""
    loaded.then(page.queue_rows, None, c["queue_table"], **QUIET)
    gr.Timer(REFRESH_S).tick(page.queue_rows, None, c["queue_table"], **QUIET)
    c["queue_table"].select(page.stop_from_queue, None, None, **QUIET)
