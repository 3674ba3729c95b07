"""The page's model menu: the models jobs may name now (the server's, and in distributed mode
those that a worker online serves), and the form's defaults following the one chosen.

Turbo takes 8 steps and no guidance, and ignores the negative prompt, which is then hidden;
Z-Image base takes more steps, guidance and a negative prompt that matters (webui/models.py).
The menu shows only when there is a choice; it is read when the page loads. Choosing a model
by hand (`.input`, not `.change`) sets its defaults; a reuse that brings a model back keeps the
job's own steps and guidance.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.models import family_of
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, RAW, Parts


def model_part() -> Parts:
    # Hidden until the page loads and finds a choice; any value sent is checked by the job service.
    menu = gr.Dropdown(
        [], value="", label=t("model"), visible=False, allow_custom_value=True, elem_id="model"
    )
    return {"model": menu}


def wire_model(page: Page, demo: gr.Blocks, c: Parts) -> None:
    defaults = [c["steps"], c["guidance_scale"], c["negative_prompt"]]

    def listed() -> list[Any]:
        models = page.service.runner.models()
        menu = gr.Dropdown(choices=models, value=models[0], visible=len(models) > 1)
        return [menu, *defaults_for(models[0])]

    demo.load(listed, None, [c["model"], *defaults], **QUIET)
    c["model"].input(defaults_for, c["model"], defaults, **QUIET, **RAW)


def defaults_for(label: Any) -> list[Any]:
    """Steps, guidance and the negative prompt's box as a job for `label` takes them."""
    family = family_of(label if isinstance(label, str) else "")
    return [family.steps, family.guidance, gr.Textbox(visible=family.negative)]
