"""Reuse on the page: a past job, one of our PNGs or the image picked in a grid, put back in
the form (webui/ui/page.py's Page mixes these handlers in). Each fills the form by field name;
its LoRAs as the library has them now, with a warning for each file gone or changed since."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from webui.jobs.record import JobRecord, PlannedImage
from webui.jobs.service import JobService
from webui.outputs import read_png_parameters
from webui.request import TEXT, GenerationRequest
from webui.settings import SEED_PER_IMAGE
from webui.ui import text
from webui.ui.looks_part import reuse_notes
from webui.ui.parts import error, language
from webui.words import Message, say, words

MORE_LIKE_VARIANTS = 4  # "More like this": new variants of the picked image's prompt


class Reuse:
    """The reuse handlers; they use the page's job service, form and upload check."""

    service: JobService
    form: dict[str, Any]

    def upload(self, file: Any, request: gr.Request | None) -> Path: ...

    def record(self, job_id: str, request: gr.Request | None) -> JobRecord: ...

    def history_reuse(self, job_id: str) -> dict[str, Any]:
        """The form as a past job had it (prompts as expanded), by field name."""
        return text.form_values(self.record(job_id, None).request)

    def reuse_history_into_form(self, job_id: str, request: gr.Request) -> dict:
        form = self.form_of(self.record(job_id, request).request, request)
        return form | {self.form["tabs"]: gr.Tabs(selected="generate")}

    def reuse_png(self, file: str | None, request: gr.Request = None) -> dict:
        """The form as it was for one PNG we made: its prompt, seed and settings, one image.
        Only the PNG's text is read, never its pixels; only a PNG this page uploaded."""
        if not file:
            return {}
        path = self.upload(file, request)
        try:
            remade = text.request_from_png(read_png_parameters(path))
        except (KeyError, OSError, ValueError) as exc:  # not a PNG, or not ours
            raise error(exc if isinstance(exc, Message) else words("not_our_png"), request) from None
        if remade.inputs and not all(map(self.service.inputs.has, remade.inputs)):
            gr.Warning(words("input_gone", name=remade.input_names[0]).say(language(request)))
            remade = dataclasses.replace(remade, kind=TEXT, inputs=(), input_names=())
        return self.form_of(remade, request)

    def use_seed(self, job_id: str | None, picked: int | None, request: gr.Request) -> dict:
        """The picked image's prompt, seed and settings in the form, one image: Generate makes it
        again."""
        record, image = self.picked_image(job_id, picked, request)
        return self.form_of(_remake(record, image), request)

    def more_like(self, job_id: str | None, picked: int | None, request: gr.Request) -> dict:
        """The picked image's prompt and settings, new seeds, several variants."""
        record, image = self.picked_image(job_id, picked, request)
        values = self.form_of(_remake(record, image), request)
        return values | {self.form["seed"]: -1, self.form["images_per_prompt"]: MORE_LIKE_VARIANTS}

    def form_of(self, request: GenerationRequest, asker: gr.Request | None = None) -> dict:
        """The form's components as `request` fills them; its LoRAs as the library has them now
        (a warning for each file gone or changed since)."""
        loras, notes = reuse_notes(request.loras, self.service.loras)
        for note in notes:
            gr.Warning(say(note, language(asker)))
        values = text.form_values(dataclasses.replace(request, loras=tuple(loras)))
        return {self.form[name]: value for name, value in values.items() if name in self.form}

    def picked_image(
        self, job_id: str | None, picked: int | None, request: gr.Request
    ) -> tuple[JobRecord, PlannedImage]:
        """The job shown in a grid (its id kept on the server) and its image picked there, by
        its place in the grid; gr.Error when none is."""
        record = self.service.record(job_id) if isinstance(job_id, str) else None
        saved = record.saved if record is not None else []
        if not (isinstance(picked, int) and 0 <= picked < len(saved)):
            raise error(words("pick_first"), request)
        assert record is not None
        return record, saved[picked]


def _remake(record: JobRecord, image: PlannedImage) -> GenerationRequest:
    """One image of a job, as a request that makes it again (from its input, if it had one)."""
    one = {"prompts": [record.prompt_of(image)], "images_per_prompt": 1, "seed": image.seed}
    source = record.input_of(image)
    if source is not None:
        one |= {"inputs": [source[0]], "input_names": [source[1]]}
    return dataclasses.replace(record.request, **one, seed_policy=SEED_PER_IMAGE)
