"""The History tab: every job, newest first, kept across restarts; the picked job's images
in a grid of their own (with the same actions as the results: star, use a seed...), and its
settings back into the form."""

from __future__ import annotations

import gradio as gr

from webui.ui import text
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, RAW, Parts, language, last_cell
from webui.ui.results import Results

EVERYONE, MINE = "everyone", "mine"


class History:
    """The tab's components and its handlers."""

    def __init__(self, page: Page) -> None:
        self.page = page
        gr.Markdown(t("history_intro"))
        with gr.Row():
            # With a login on: everyone's jobs, or only mine.
            c: Parts = {
                "scope": gr.Radio(
                    [(t("everyone"), EVERYONE), (t("mine"), MINE)],
                    value=EVERYONE,
                    show_label=False,
                    visible=page.access.login_on,
                    elem_id="history-scope",
                ),
                "refresh": gr.Button(t("refresh"), size="sm", elem_id="history-refresh"),
            }
        c["table"] = gr.Dataframe(
            headers=list(text.HISTORY_COLUMNS), interactive=False, wrap=True, elem_id="history-table"
        )
        c["chosen"] = gr.State(None)  # the job id picked in the table
        c["reuse"] = gr.Button(t("load_settings"), elem_id="history-reuse")
        self.results = Results(page, prefix="history-", label="images")
        self.c = c

    def wire(self, demo: gr.Blocks, tab: gr.Tab) -> None:
        c, page = self.c, self.page
        triggers = [c["refresh"].click, c["scope"].change, tab.select, demo.load]
        gr.on(triggers, self.rows, c["scope"], c["table"], **QUIET, **RAW)
        c["table"].select(self.choose, None, [c["chosen"], *self.results.shown], **QUIET)
        c["reuse"].click(page.reuse_history_into_form, c["chosen"], list(page.form.values()), **QUIET)
        self.results.wire()

    def rows(self, scope: str, request: gr.Request) -> dict:
        """The table (everyone's jobs, or the person's own), its headers in the page's language."""
        mine = scope == MINE and request.username is not None
        rows = self.page.history(request, owner=request.username if mine else None)
        return text.table(rows, "history_columns", language(request))

    def choose(self, event: gr.SelectData, request: gr.Request) -> dict:
        """A row picked: its job's images in the grid."""
        record = self.page.record(last_cell(event), request)  # the job id, the table's last column
        return {self.c["chosen"]: record.id} | self.results.show(record, language(request))
