"""The Queue panel: every team member's running and waiting jobs, refreshed by a timer; a click
on the Stop cell of one of yours stops it."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.ui import text
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, Parts, language, last_cell
from webui.words import words

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

    async def rows(request: gr.Request) -> dict[str, Any]:
        """Running and waiting jobs, yours marked and stoppable (an admin's: all)."""
        who, lang = page.identity(request), language(request)
        return text.table([text.queue_row(v, who, lang) for v in page.service.views()], "queue_columns", lang)

    def stop_clicked(event: gr.SelectData, request: gr.Request) -> None:
        """A click on the Stop cell of a job."""
        if isinstance(event.index, list) and event.index[1:2] == [text.STOP_COLUMN] and event.value:
            job_id = last_cell(event)
            if page.stop_job(job_id, request):
                gr.Info(words("stopping_job", job=job_id).say(language(request)))

    loaded.then(rows, None, c["queue_table"], **QUIET)
    gr.Timer(REFRESH_S).tick(rows, None, c["queue_table"], **QUIET)
    c["queue_table"].select(stop_clicked, None, None, **QUIET)
