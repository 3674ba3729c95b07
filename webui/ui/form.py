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

Parts = dict[str, Any]  # components by name


def form_part(s: Settings) -> Parts:
    c: Parts = {}
    c["prompts"] = gr.Textbox(
        label="Prompts: one per line; {red|navy} makes one prompt per alternative "
        "(blank lines and lines starting with # are skipped)",
        lines=5,
        max_lines=12,
        placeholder="a red leather sneaker on a white seamless background, studio lighting",
        elem_id="prompts",
    )
    c["prompt_file"] = gr.UploadButton(
        "Load prompts from a .txt or .csv",
        file_types=list(PROMPT_FILE_TYPES),
        size="sm",
        elem_id="prompt-file",
    )
    c["style"] = gr.Textbox(
        "",
        label="Style, appended to every prompt",
        elem_id="style",
        placeholder="studio lighting, white seamless background, 85mm",
    )
    c["count"] = gr.Markdown(text.count_text("", 1, s.max_prompts, s.max_images), elem_id="count")
    with gr.Row():
        c["generate"] = gr.Button("Generate (Ctrl+Enter)", variant="primary", elem_id="generate")
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")
    with gr.Row():
        c["images_per_prompt"] = gr.Slider(
            1, 16, value=1, step=1, label="Images per prompt", elem_id="per-prompt"
        )
        c["seed"] = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id="seed")
    with gr.Row():
        presets = [label for label, _, _ in text.PRESETS] + [text.CUSTOM]
        c["preset"] = gr.Dropdown(presets, value=presets[0], label="Resolution", elem_id="resolution")
        size = {"minimum": s.min_size, "maximum": s.max_size, "value": DEFAULT_SIZE, "step": SIZE_MULTIPLE}
        c["width"] = gr.Slider(label="Width", elem_id="width", **size)
        c["height"] = gr.Slider(label="Height", elem_id="height", **size)
    return c


def advanced_part(s: Settings) -> Parts:
    """What Turbo rarely needs changed, closed by default."""
    c: Parts = {}
    with gr.Accordion("Advanced: steps, guidance, negative prompt, seeds", open=False, elem_id="advanced"):
        with gr.Row():
            c["steps"] = gr.Slider(
                s.min_steps, s.max_steps, value=DEFAULT_STEPS, step=1, label="Steps (8 for Turbo)"
            )
            c["guidance_scale"] = gr.Slider(
                0, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5, label="Guidance scale (0 for Turbo)"
            )
        c["negative_prompt"] = gr.Textbox(
            "",
            label="Negative prompt",
            info="Used only when the guidance scale is above 0 (then each step costs twice).",
        )
        policies = [
            ("New seed per image (seed + k)", SEED_PER_IMAGE),
            ("Same seeds for every prompt (variant j: seed + j)", SEED_PER_VARIANT),
        ]
        c["seed_policy"] = gr.Radio(policies, value=SEED_PER_IMAGE, label="Seeds", elem_id="seed-policy")
    return c


def more_part(s: Settings, queue_columns: Sequence[str]) -> Parts:
    """Under the form: the Advanced section, reusing a PNG's settings, the Queue panel."""
    c: Parts = {}
    c |= advanced_part(s)
    c["reuse"] = gr.UploadButton(
        "Reuse a PNG's settings", file_types=[".png"], size="sm", variant="secondary", elem_id="reuse-png"
    )
    with gr.Accordion("Queue: every team member's running and waiting jobs", elem_id="queue-panel"):
        c["queue_table"] = gr.Dataframe(
            headers=list(queue_columns),
            interactive=False,
            wrap=True,
            max_height=260,
            elem_id="queue-table",
        )
    return c
