"""The generate form: the prompts, Generate and Stop, and the everyday controls in sight;
the rest in a closed Advanced section, then a small control to reuse a PNG's settings. Each
part returns its components by name; `wire_form` connects the form's own behaviour."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.prompts import PROMPT_FILE_TYPES
from webui.request import TEXT
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
from webui.ui.page import Page
from webui.ui.parts import QUIET, RAW, Parts, language


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
    c["count"] = gr.Markdown(t("count_empty"), elem_id="count")  # until the box changes
    with gr.Row():
        c["generate"] = gr.Button(t("generate"), variant="primary", elem_id="generate")
        c["stop"] = gr.Button(t("stop"), variant="stop", elem_id="stop")
    with gr.Row():
        c["images_per_prompt"] = gr.Slider(
            1, 16, value=1, step=1, label=t("per_prompt"), elem_id="per-prompt"
        )
        c["seed"] = gr.Number(value=-1, precision=0, label=t("seed"), elem_id="seed")
    with gr.Row():
        presets = [(label, label) for label, _, _ in text.PRESETS] + [(t("custom"), text.CUSTOM)]
        c["preset"] = gr.Dropdown(presets, value=presets[0][1], label=t("resolution"), elem_id="resolution")
        size = {"minimum": s.min_size, "maximum": s.max_size, "value": DEFAULT_SIZE, "step": SIZE_MULTIPLE}
        c["width"] = gr.Slider(label=t("width"), elem_id="width", **size)
        c["height"] = gr.Slider(label=t("height"), elem_id="height", **size)
    return c


def advanced_part(s: Settings) -> Parts:
    """What Turbo rarely needs changed, closed by default."""
    c: Parts = {}
    with gr.Accordion(t("advanced"), open=False, elem_id="advanced"):
        with gr.Row():
            c["steps"] = gr.Slider(
                s.min_steps, s.max_steps, value=DEFAULT_STEPS, step=1, label=t("steps"), elem_id="steps"
            )
            c["guidance_scale"] = gr.Slider(
                0, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5, label=t("guidance"), elem_id="guidance"
            )
        c["negative_prompt"] = gr.Textbox(
            "",
            label=t("negative"),
            info=t("negative_info"),
            elem_id="negative",
        )
        policies = [
            (t("per_image"), SEED_PER_IMAGE),
            (t("per_variant"), SEED_PER_VARIANT),
        ]
        c["seed_policy"] = gr.Radio(policies, value=SEED_PER_IMAGE, label=t("seeds"), elem_id="seed-policy")
    return c


def reuse_part() -> Parts:
    """A small button: the form as one of our PNGs was made."""
    button = gr.UploadButton(
        t("reuse"), file_types=[".png"], size="sm", variant="secondary", elem_id="reuse-png"
    )
    return {"reuse": button}


def wire_form(page: Page, c: Parts) -> None:
    """The form's own behaviour: the count line, presets, prompt files, reusing a PNG."""
    s = page.settings

    def update_count(
        prompt_text: str,
        per_prompt: float,
        kind: str,
        files: Any,
        reused: Any,
        painted: Any,
        request: gr.Request,
    ) -> str:
        photo = isinstance(painted, dict) and bool(painted.get("background"))
        sources = 0 if kind == TEXT else len(files or []) + len(reused or []) + photo
        lang = language(request)
        return text.count_text(prompt_text, per_prompt, s.max_prompts, s.max_images, lang, sources)

    gr.on(
        [c[name].change for name in ("prompts", "images_per_prompt", "kind", "images", "reused")]
        + [c["painted"].upload, c["painted"].clear],
        update_count,
        [c["prompts"], c["images_per_prompt"], c["kind"], c["images"], c["reused"], c["painted"]],
        c["count"],
        **QUIET,
        **RAW,
    )
    c["preset"].change(_apply_preset, c["preset"], [c["width"], c["height"]], **QUIET, **RAW)
    # .input: sizes typed by hand, not those a preset sets.
    gr.on(
        [c["width"].input, c["height"].input],
        _follow_size,
        [c["preset"], c["width"], c["height"]],
        c["preset"],
        **QUIET,
        **RAW,
    )
    c["prompt_file"].upload(
        page.load_prompts, c["prompt_file"], c["prompts"], api_name="load_prompts", show_progress="hidden"
    )
    c["reuse"].upload(
        page.reuse_png, c["reuse"], list(page.form.values()), api_name="reuse_png", show_progress="hidden"
    )


def _apply_preset(label: str) -> tuple:
    for name, w, h in text.PRESETS:
        if name == label:
            return w, h
    return gr.skip(), gr.skip()


def _follow_size(label: str, w: float, h: float) -> str:
    """A size typed by hand that the chosen preset does not have makes the preset Custom."""
    chosen = next(((pw, ph) for name, pw, ph in text.PRESETS if name == label), None)
    return label if chosen == (w, h) else text.CUSTOM
