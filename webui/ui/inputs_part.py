"""The page's "Product or reference images" section: several images at once, the kind of job
(product in scene, or variations), how a product is told from its background (transparency,
a painted area, or a plain background), placement, strength, and a preview of what the job
will start from, made on the server before Generate.

Uploads reach the handlers as paths that Gradio's upload route wrote; each is opened only
once the upload gate shows it is this page's upload (Page.upload). Images that a reuse brings
back (History, "Use this seed", a PNG) are held in a server-side State by content hash.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from webui.product import DEFAULT_POSITION, DEFAULT_SCALE, preview
from webui.request import POSITIONS, PRODUCT, TEXT, VARIATION, RequestError, steps_run
from webui.ui.i18n import t
from webui.ui.page import Page
from webui.ui.parts import QUIET, RAW, Parts, language
from webui.ui.uploaded import read_uploads
from webui.words import say, words

PREVIEW_SIZE = 192  # pixels, the longer side of each preview


def inputs_part() -> Parts:
    c: Parts = {}
    with gr.Accordion(t("inputs"), open=False, elem_id="inputs"):
        c["kind"] = gr.Radio(
            [(t("kind_text"), TEXT), (t("kind_product"), PRODUCT), (t("kind_variation"), VARIATION)],
            value=TEXT,
            label=t("kind"),
            elem_id="kind",
        )
        c["images"] = gr.File(
            file_count="multiple",
            file_types=[".png", ".jpg", ".jpeg", ".webp"],
            label=t("input_files"),
            elem_id="input-files",
        )
        with gr.Column(visible=False) as c["product_options"]:  # shown for product shots
            c["cutout"] = gr.Radio(
                [(t("cutout_auto"), "auto"), (t("cutout_plain"), "plain")],
                value="auto",
                label=t("cutout"),
                elem_id="cutout",
            )
            c["painted"] = gr.ImageEditor(
                type="filepath",
                label=t("painted"),
                brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                eraser=gr.Eraser(),
                transforms=(),
                layers=False,
                height=320,
                elem_id="painted",
            )
            with gr.Row():
                c["product_scale"] = gr.Slider(
                    0.1,
                    1.0,
                    value=DEFAULT_SCALE,
                    step=0.05,
                    label=t("product_scale"),
                    elem_id="product-scale",
                )
                c["position"] = gr.Radio(
                    [(t(f"position_{p}"), p) for p in POSITIONS],
                    value=DEFAULT_POSITION,
                    label=t("position"),
                    elem_id="position",
                )
        with gr.Column(visible=False) as c["variation_options"]:  # shown for variations
            c["strength"] = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label=t("strength"), elem_id="strength")
            c["strength_note"] = gr.Markdown(elem_id="strength-note")
        c["reused"] = gr.State([])  # (hash, name) of inputs a reuse brought back
        c["preview"] = gr.Gallery(
            label=t("preview"),
            columns=4,
            height=240,
            object_fit="contain",
            format="png",
            elem_id="input-preview",
        )
        c["preview_note"] = gr.Markdown(elem_id="preview-note")
    return c


def wire_inputs(page: Page, c: Parts) -> None:
    """Preview on every change; the steps a variation runs; a new upload replaces reused inputs."""
    sources = [c["kind"], c["images"], c["cutout"], c["painted"], c["reused"]]

    def show(kind: Any, files: Any, cutout: Any, painted: Any, reused: Any, request: gr.Request) -> tuple:
        return previews(page, kind, files, cutout, painted, reused, request=request)

    c["kind"].change(
        lambda kind: (gr.Column(visible=kind == PRODUCT), gr.Column(visible=kind == VARIATION)),
        c["kind"],
        [c["product_options"], c["variation_options"]],
        **QUIET,
        **RAW,
    )
    gr.on(
        [c["kind"].change, c["images"].change, c["cutout"].change, c["painted"].change, c["reused"].change],
        show,
        sources,
        [c["preview"], c["preview_note"]],
        trigger_mode="always_last",  # a brush stroke is a change: only the last one's preview counts
        **QUIET,
        **RAW,
    )
    c["images"].upload(lambda: [], None, c["reused"], **QUIET)
    gr.on(
        [c["strength"].change, c["steps"].change, c["kind"].change],
        strength_note,
        [c["kind"], c["strength"], c["steps"]],
        c["strength_note"],
        **QUIET,
        **RAW,
    )


def strength_note(kind: Any, strength: Any, steps: Any, request: gr.Request) -> str:
    if kind != VARIATION or not isinstance(strength, (int, float)) or not isinstance(steps, (int, float)):
        return ""
    run = steps_run(VARIATION, int(steps), float(strength))
    return words("strength_steps", run=run, steps=int(steps)).say(language(request))


def previews(
    page: Page,
    kind: Any,
    files: Any,
    cutout: Any,
    painted: Any,
    reused: Any,
    *placing: Any,
    request: gr.Request,
) -> tuple:
    """What the job will start from, one picture per input, or why it cannot."""
    values = {"kind": kind, "images": files, "cutout": cutout, "painted": painted}
    shown: list[tuple[Image.Image, str]] = []
    try:
        for digest, name in reused or []:
            if page.service.inputs.has(digest):
                shown.append((_looks(page.service.inputs.open(digest), kind), name))
        if kind in (PRODUCT, VARIATION):
            opened = read_uploads(values, page.settings, lambda file: page.upload(file, request))
            shown += [(_looks(image, kind), name) for image, name in opened]
    except (RequestError, gr.Error) as exc:
        return [], f"**{say(exc, language(request)) if isinstance(exc, RequestError) else exc.message}**"
    note = "" if shown or kind == TEXT else words("add_images").say(language(request))
    return shown, note


def _looks(image: Image.Image, kind: Any) -> Image.Image:
    if kind == PRODUCT and image.mode == "RGBA":
        return preview(image, PREVIEW_SIZE)
    return ImageOps.contain(image.convert("RGB"), (PREVIEW_SIZE, PREVIEW_SIZE))
