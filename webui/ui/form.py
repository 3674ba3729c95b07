"""The generate form: the prompts, Generate and Stop, and the everyday controls in sight;
the rest in a closed Advanced section, then a small control to reuse a PNG's settings and the
team's Queue panel. Each function returns its components by name (webui/ui/layout.py wires them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from webui.prompts import PROMPT_FILE_TYPES
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    SEED_PER_IMAGE,
    SEED_PER_VARIANT,
    SIZE_MULTIPLE,
    Settings,
)
from webui.ui import text
from webui.ui.i18n import t

Parts = dict[str, Any]  # components by name


def form_part(s: Settings) -> Parts:
    c: Parts = {}
    c["prompts"] = gr.Textbox(
        label=t("prompts"),
        lines=5,
        max_lines=12,
        placeholder=t("prompts_placeholder"),
        elem_id="prompts",
    )
    c["prompt_file"] = gr.UploadButton(
        t("load_prompts"),
        file_types=list(PROMPT_FILE_TYPES),
        size="sm",
        elem_id="prompt-file",
    )
    c["style"] = gr.Textbox(
        "",
        label=t("style"),
        elem_id="style",
        placeholder=t("style_placeholder"),
    )
    c["count"] = gr.Markdown(text.count_text("", 1, s.max_prompts, s.max_images), elem_id="count")
    with gr.Row():
        c["generate"] = gr.Button(t("generate"), variant="primary", elem_id="generate")
        c["stop"] = gr.Button(t("stop"), variant="stop", elem_id="stop")
    with gr.Row():
        c["images_per_prompt"] = gr.Slider(
            1, 16, value=1, step=1, label=t("per_prompt"), elem_id="per-prompt"
        )
        c["seed"] = gr.Number(value=-1, precision=0, label=t("seed"), elem_id="seed")
    with gr.Row():
        presets = [label for label, _, _ in text.PRESETS] + [text.CUSTOM]
        c["preset"] = gr.Dropdown(presets, value=presets[0], label=t("resolution"), elem_id="resolution")
        size = {"minimum": s.min_size, "maximum": s.max_size, "value": DEFAULT_SIZE, "step": SIZE_MULTIPLE}
        c["width"] = gr.Slider(label=t("width"), elem_id="width", **size)
        c["height"] = gr.Slider(label=t("height"), elem_id="height", **size)
    return c


def advanced_part(s: Settings) -> Parts:
    """What Turbo rarely needs changed, closed by default."""
    c: Parts = {}
    with gr.Accordion(t("advanced"), open=False, elem_id="advanced"):
        with gr.Row():
            c["steps"] = gr.Slider(s.min_steps, s.max_steps, value=DEFAULT_STEPS, step=1, label=t("steps"))
            c["guidance_scale"] = gr.Slider(
                0, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5, label=t("guidance")
            )
        c["negative_prompt"] = gr.Textbox(
            "",
            label=t("negative"),
            info=t("negative_info"),
        )
        policies = [
            ("New seed per image (seed + k)", SEED_PER_IMAGE),
            ("Same seeds for every prompt (variant j: seed + j)", SEED_PER_VARIANT),
        ]
        c["seed_policy"] = gr.Radio(policies, value=SEED_PER_IMAGE, label=t("seeds"), elem_id="seed-policy")
    return c


def more_part(s: Settings, queue_columns: Sequence[str]) -> Parts:
    """Under the form: the Advanced section, reusing a PNG's settings, the Queue panel."""
    c: Parts = {}
    c |= advanced_part(s)
    c["reuse"] = gr.UploadButton(
        t("reuse"), file_types=[".png"], size="sm", variant="secondary", elem_id="reuse-png"
    )
    with gr.Accordion(t("queue"), elem_id="queue-panel"):
        c["queue_table"] = gr.Dataframe(
            headers=list(queue_columns),
            interactive=False,
            wrap=True,
            max_height=260,
            elem_id="queue-table",
        )
    return c
