"""A job's images and what to do with them: the grid, the picked image with its actions (use
its seed, more like it, copy its prompt, download it, star it) and the job's downloads.

The Generate tab and History each have one `Results`: its components, built in the layout,
and its handlers, bound methods that answer with dicts of its own components. The job a grid
shows is kept on the server (a State), and an image is picked by its place in the grid: what
the actions act on is looked up in the job service, never taken from what the page sends.
"""

from __future__ import annotations

import threading

import gradio as gr

from webui.jobs.record import JobRecord
from webui.request import GenerationRequest, RequestError
from webui.ui import text
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, Parts, error
from webui.words import ENGLISH

MAX_GRID_COLUMNS = 8  # more variants than this wrap onto further rows of the grid
WRAP_COLUMNS = 4  # images a row when each prompt has one
# /generate's results, in this order: scripts unpack them.
GENERATED = ("gallery", "summary", "details", "download", "sheet")
_STARRING = threading.Lock()  # a star and its job's starred zip, one at a time (both grids)


class Results:
    """One grid of a job's images with its actions; `prefix` keeps its element ids apart."""

    def __init__(self, page: Page, prefix: str = "", label: str = "results") -> None:
        self.page, self.prefix = page, prefix
        c: Parts = {"summary": gr.Markdown(elem_id=f"{prefix}summary")}
        # One row per prompt, one column per variant (set per job), or a wrapping grid.
        c["gallery"] = gr.Gallery(
            label=t(label), format="png", columns=WRAP_COLUMNS, height="auto", elem_id=f"{prefix}gallery"
        )
        c["details"] = gr.JSON(label=t("details"), visible=False)  # per image, for scripts: an output only
        c["job"] = gr.State(None)  # the id of the job shown
        c["picked"] = gr.State(None)  # the picked image's place in the grid
        with gr.Column(visible=False, elem_id=f"{prefix}picked") as c["pick_panel"]:
            c["pick_prompt"] = gr.Textbox(
                label=t("picked_prompt"),
                interactive=False,
                buttons=["copy"],
                elem_id=f"{prefix}picked-prompt",
            )
            c["pick_info"] = gr.Markdown(elem_id=f"{prefix}picked-info")
            with gr.Row():
                c["star"] = gr.Button(t("star"), size="sm", elem_id=f"{prefix}star")
                c["use_seed"] = gr.Button(t("use_seed"), size="sm", elem_id=f"{prefix}use-seed")
                c["more_like"] = gr.Button(t("more_like"), size="sm", elem_id=f"{prefix}more-like")
                c["download_png"] = gr.DownloadButton(
                    t("download_png"), value=None, size="sm", elem_id=f"{prefix}download-png"
                )
        with gr.Row():
            c["download"] = gr.DownloadButton(t("download_all"), value=None, elem_id=f"{prefix}download")
            c["sheet"] = gr.DownloadButton(t("contact_sheet"), value=None, elem_id=f"{prefix}contact-sheet")
            c["starred"] = gr.DownloadButton(
                t("download_starred"), value=None, visible=False, elem_id=f"{prefix}download-starred"
            )
        self.c = c

    def wire(self) -> None:
        c, form = self.c, list(self.page.form.values())
        # Every pick answered, in order: the default drops a pick made while one is pending, and
        # the panel would then describe the image before the one shown large.
        c["gallery"].select(self.pick, c["job"], self.picking, trigger_mode="multiple", **QUIET)
        c["star"].click(self.star, [c["job"], c["picked"]], self.starring, **QUIET)
        c["use_seed"].click(self.page.use_seed, [c["job"], c["picked"]], form, **QUIET)
        c["more_like"].click(self.page.more_like, [c["job"], c["picked"]], form, **QUIET)

    def of(self, *names: str) -> list:
        """Components by name, in that order: the inputs or outputs of an event."""
        return [self.c[name] for name in names]

    @property
    def picking(self) -> list:
        return self.of("picked", "pick_panel", "pick_prompt", "pick_info", "download_png", "star")

    @property
    def starring(self) -> list:
        return self.of("gallery", "details", "star", "starred")

    @property
    def generated_outputs(self) -> list:
        return self.of(*GENERATED, "job", "picked", "pick_panel")

    @property
    def shaping(self) -> list:
        return self.of("gallery", "starred")

    @property
    def shown(self) -> list:
        return self.of(*GENERATED, "job", "starred", "picked", "pick_panel")

    def generated(self, record: JobRecord, lang: str = ENGLISH, values: dict | None = None) -> dict:
        """/generate's answer: the job's results by component (`values`: text.outputs's, if made),
        nothing picked. The pick is cleared here, with the new images, and not by the event after:
        an image picked before that one answers would be unpicked under the user's hand."""
        values = text.outputs(record, lang) if values is None else values
        shown = {self.c[name]: value for name, value in values.items() if name in GENERATED}
        return shown | {self.c["job"]: record.id} | self._unpicked()

    def shape(self, job_id: str | None) -> dict:
        """After a job's results arrive: the grid's shape and the starred download."""
        return self._shape(self.page.service.record(job_id) if job_id else None)

    def show(self, record: JobRecord, lang: str = ENGLISH) -> dict:
        """A job in this grid (History, or the job a page follows on load): its results,
        downloads and shape, nothing picked."""
        values = text.outputs(record, lang)
        return self.generated(record, lang, values) | self._shape(record, images=values["gallery"])

    def _unpicked(self) -> dict:
        return {self.c["picked"]: None, self.c["pick_panel"]: gr.Column(visible=False)}

    @property
    def unpicking(self) -> list:
        return self.of("gallery", "picked", "pick_panel")

    def unpick(self) -> dict:
        """When Generate is clicked: no image of the old job stays shown large or picked (the new
        job's grid would otherwise open large at the same place, with no panel)."""
        return {self.c["gallery"]: gr.Gallery(selected_index=None)} | self._unpicked()

    def _shape(self, record: JobRecord | None, images: list | None = None) -> dict:
        """The grid's columns (and `images`, when given) and the starred download."""
        c = self.c
        gallery = starred = gr.skip()
        if record is not None:
            columns = _columns(record.request)
            gallery = (
                gr.Gallery(columns=columns)
                if images is None
                else gr.Gallery(images, columns=columns, selected_index=None)
            )
            starred = self._starred_button(record)
        return {c["gallery"]: gallery, c["starred"]: starred}

    def pick(self, job_id: str | None, event: gr.SelectData, request: gr.Request) -> dict:
        """The picked image: its prompt to copy, seed, size and file, its PNG, its star."""
        record, image = self.page.picked_image(job_id, event.index, request)
        details = text.image_details(record, image)
        c = self.c
        return {
            c["picked"]: event.index,
            c["pick_panel"]: gr.Column(visible=True),
            c["pick_prompt"]: details["prompt"],
            c["pick_info"]: text.picked_line(details),
            c["download_png"]: details["file"],
            c["star"]: t("unstar") if image.starred else t("star"),
        }

    def star(self, job_id: str | None, picked: int | None, request: gr.Request) -> dict:
        """Star the picked image, or take its star back; the starred zip follows."""
        record, image = self.page.picked_image(job_id, picked, request)
        assert picked is not None
        with _STARRING:
            try:
                record = self.page.service.star(record.id, image.index, not image.starred)
            except RequestError as exc:
                raise error(exc, request) from None
            starred_button = self._starred_button(record, write=True)
        values = text.outputs(record)
        now = values["details"][picked]
        return {
            self.c["gallery"]: gr.Gallery(value=values["gallery"], selected_index=picked),
            self.c["details"]: values["details"],
            self.c["star"]: t("unstar") if now["starred"] else t("star"),
            self.c["starred"]: starred_button,
        }

    def _starred_button(self, record: JobRecord, write: bool = False) -> gr.DownloadButton:
        """ "Download starred (n)", or hidden when nothing is starred. The zip is written anew
        after a star changes, and when it is missing."""
        path = self.page.service.starred_zip(record, write)
        return gr.DownloadButton(value=str(path) if path else None, visible=path is not None)


def _columns(request: GenerationRequest) -> int:
    """A column per variant: prompt-then-variant order then makes a row per prompt; with input
    images, a row per input when its scenes and variants fit in one. With one image per row,
    a wrapping grid instead."""
    per_input = len(request.prompts) * request.images_per_prompt
    if request.inputs and 1 < per_input <= MAX_GRID_COLUMNS:
        return per_input
    per_prompt = request.images_per_prompt
    return WRAP_COLUMNS if per_prompt == 1 else min(per_prompt, MAX_GRID_COLUMNS)
