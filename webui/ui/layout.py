"""The Gradio page: components laid out and wired to a `Page`'s handlers. It loads no model.

Events that wait on a job (`/generate`, following a job on load) are async handlers with no
concurrency limit: they hold no worker thread, and our job queue, not Gradio's, decides
what runs. Light events that read memory or disk are not queued at all.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.prompts import PROMPT_FILE_TYPES, parse_prompts
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    SEED_PER_IMAGE,
    SEED_PER_VARIANT,
    SIZE_MULTIPLE,
)
from webui.ui import text
from webui.ui.page import Page

MAX_GRID_COLUMNS = 8  # more variants than this wrap onto further rows of the gallery
QUEUE_REFRESH_S = 1.5  # the Queue panel's timer: one light request per page
EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "assets" / "example_prompts.txt"
QUIET = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}


def create_demo(page: Page, model_label: str, is_demo: bool, browser_key: str) -> gr.Blocks:
    """The page, wired to `page`. Queueing and serving are the caller's business.

    `browser_key` encrypts the browser's id in its local storage; it must stay the same
    across restarts, or every browser would look new after one.
    """
    s = page.settings
    with gr.Blocks(title="Z-Image-Turbo", analytics_enabled=False) as demo:
        browser_id = gr.BrowserState(None, storage_key="zimage-webui-browser", secret=browser_key)
        gr.Markdown(f"## Z-Image-Turbo &nbsp; <small>{model_label}</small>")
        if is_demo:
            gr.Markdown(text.DEMO_BANNER, elem_id="demo-banner")
        if s.exposed_without_login:
            gr.Markdown(text.EXPOSED_BANNER.format(host=s.host), elem_id="exposed-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                prompts = gr.Textbox(
                    label="Prompts: one per line; {red|navy} makes one prompt per alternative "
                    "(blank lines and lines starting with # are skipped)",
                    lines=6,
                    placeholder="a red leather sneaker on a white seamless background, studio lighting",
                    elem_id="prompts",
                )
                prompt_file = gr.UploadButton(
                    "Load prompts from a .txt or .csv",
                    file_types=list(PROMPT_FILE_TYPES),
                    size="sm",
                    elem_id="prompt-file",
                )
                style = gr.Textbox(
                    "",
                    label="Style, appended to every prompt",
                    elem_id="style",
                    placeholder="studio lighting, white seamless background, 85mm",
                )
                count = gr.Markdown(text.count_text("", 1, s.max_prompts, s.max_images), elem_id="count")
                with gr.Row():
                    images_per_prompt = gr.Slider(
                        1, 16, value=1, step=1, label="Images per prompt", elem_id="per-prompt"
                    )
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                    seed_policy = gr.Radio(
                        [
                            ("New seed per image (seed + k)", SEED_PER_IMAGE),
                            ("Same seeds for every prompt (variant j: seed + j)", SEED_PER_VARIANT),
                        ],
                        value=SEED_PER_IMAGE,
                        label="Seeds",
                        elem_id="seed-policy",
                    )
                    preset = gr.Dropdown(
                        [label for label, _, _ in text.PRESETS] + [text.CUSTOM],
                        value=text.PRESETS[0][0],
                        label="Resolution",
                        elem_id="resolution",
                    )
                with gr.Row():
                    size = {
                        "minimum": s.min_size,
                        "maximum": s.max_size,
                        "value": DEFAULT_SIZE,
                        "step": SIZE_MULTIPLE,
                    }
                    width = gr.Slider(label="Width", elem_id="width", **size)
                    height = gr.Slider(label="Height", elem_id="height", **size)
                    steps = gr.Slider(
                        s.min_steps, s.max_steps, value=DEFAULT_STEPS, step=1, label="Steps (8 for Turbo)"
                    )
                with gr.Row():
                    guidance_scale = gr.Slider(
                        0,
                        MAX_GUIDANCE,
                        value=DEFAULT_GUIDANCE,
                        step=0.5,
                        label="Guidance scale (0 for Turbo)",
                    )
                    negative_prompt = gr.Textbox(
                        "",
                        label="Negative prompt",
                        info="Used only when the guidance scale is above 0 (then each step costs twice).",
                    )
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Accordion(
                    "Queue: every team member's running and waiting jobs", elem_id="queue-panel"
                ):
                    queue_table = gr.Dataframe(
                        headers=list(text.QUEUE_COLUMNS),
                        interactive=False,
                        wrap=True,
                        max_height=260,
                        elem_id="queue-table",
                    )
                reuse = gr.File(
                    label="Drop one of our PNGs here to fill the form with the settings it was made with",
                    file_types=[".png"],
                    height=90,
                    elem_id="reuse-png",
                )
                summary = gr.Markdown(elem_id="summary")
                # A grid: one row per prompt, one column per variant (set per result).
                gallery = gr.Gallery(
                    label="Results", format="png", columns=4, height="auto", elem_id="gallery"
                )
                with gr.Row():
                    download = gr.DownloadButton("Download all (zip)", value=None, elem_id="download")
                    sheet = gr.DownloadButton("Contact sheet (PNG)", value=None, elem_id="contact-sheet")
                details = gr.JSON(label="Images: prompt, seed, size, steps, file", visible=False)
                lines = _load_examples()
                if lines:
                    # Each product shot alone, and the whole set as one multi-prompt request.
                    gr.Examples(
                        [[line] for line in lines] + [["\n".join(lines)]],
                        inputs=[prompts],
                        example_labels=[*lines, f"All {len(lines)} product shots"],
                        label="Example prompts",
                    )
            with gr.Tab("History", id="history", elem_id="history-tab") as history_tab:
                gr.Markdown(
                    "Every job, newest first, running and waiting ones included; kept across restarts. "
                    "Pick one to see its images, download them, or load its settings into the form."
                )
                refresh = gr.Button("Refresh", size="sm", elem_id="history-refresh")
                table = gr.Dataframe(
                    headers=list(text.HISTORY_COLUMNS), interactive=False, wrap=True, elem_id="history-table"
                )
                chosen = gr.Textbox(visible=False)  # the job id picked in the table
                past_gallery = gr.Gallery(
                    label="Images", format="png", columns=4, height="auto", elem_id="history-gallery"
                )
                with gr.Row():
                    reuse_past = gr.Button("Load these settings into the form", elem_id="history-reuse")
                    past_zip = gr.DownloadButton("Download (zip)", value=None, elem_id="history-zip")

        # In the order the form's values come back to scripts (/reuse_png).
        page.form = {
            "prompts": prompts,
            "images_per_prompt": images_per_prompt,
            "seed": seed,
            "seed_policy": seed_policy,
            "preset": preset,
            "width": width,
            "height": height,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "negative_prompt": negative_prompt,
            "style": style,
            "tabs": tabs,
        }
        results = [gallery, summary, details, download, sheet]
        form_inputs = [
            prompts,
            images_per_prompt,
            seed,
            width,
            height,
            steps,
            guidance_scale,
            negative_prompt,
            style,
            seed_policy,
        ]

        # For scripts: jobs by id, the history. First, so that these names are theirs.
        gr.api(page.submit, api_name="submit")
        gr.api(page.job, api_name="job")
        gr.api(page.jobs, api_name="jobs")
        gr.api(page.stop_job, api_name="stop_job")
        gr.api(page.history, api_name="history")
        gr.api(page.history_request, api_name="history_request")
        gr.api(page.history_reuse, api_name="history_reuse")

        # Waiting on a job: async, no concurrency limit (our queue decides), progress shown.
        generate_button.click(
            page.generate, form_inputs, results, api_name="generate", concurrency_limit=None
        ).then(_grid, images_per_prompt, gallery, **QUIET).then(page.history, None, table, **QUIET)
        # On load, first who this browser is; then its panel, and its newest unfinished job followed.
        identified = demo.load(page.identify, browser_id, browser_id, **QUIET)
        identified.then(page.queue_rows, None, queue_table, **QUIET)
        identified.then(
            page.attach, None, results, concurrency_limit=None, show_progress="full", api_visibility="private"
        )
        stop_button.click(page.stop, api_name="stop", queue=False, show_progress="hidden")

        timer = gr.Timer(QUEUE_REFRESH_S)
        timer.tick(page.queue_rows, None, queue_table, **QUIET)
        queue_table.select(page.stop_from_queue, None, None, **QUIET)

        prompt_file.upload(
            page.load_prompts, prompt_file, prompts, api_name="load_prompts", show_progress="hidden"
        )
        reuse.upload(
            page.reuse_png,
            reuse,
            [c for c in page.form.values() if c is not tabs],
            api_name="reuse_png",
            show_progress="hidden",
        )

        for trigger in (refresh.click, history_tab.select, demo.load):
            trigger(page.history, None, table, **QUIET)
        table.select(_pick, None, chosen, **QUIET).then(
            page.history_request, chosen, [past_gallery, past_zip], **QUIET
        )
        reuse_past.click(page.reuse_history_into_form, chosen, list(page.form.values()), **QUIET)

        def update_count(prompt_text: str, per_prompt: float) -> str:
            return text.count_text(prompt_text, per_prompt, s.max_prompts, s.max_images)

        for trigger in (prompts.change, images_per_prompt.change):
            trigger(update_count, [prompts, images_per_prompt], count, **QUIET)
        preset.change(_apply_preset, preset, [width, height], **QUIET)
        for field in (width, height):  # .input: by hand only, not when a preset sets them
            field.input(_follow_size, [preset, width, height], preset, **QUIET)
    return demo


def _grid(per_prompt: float) -> gr.Gallery:
    """A column per variant: prompt-then-variant order then makes a row per prompt."""
    return gr.Gallery(columns=max(1, min(int(per_prompt or 1), MAX_GRID_COLUMNS)))


def _pick(event: gr.SelectData) -> str:
    return event.row_value[-1]  # the job id, the table's last column


def _apply_preset(label: str) -> tuple:
    for name, w, h in text.PRESETS:
        if name == label:
            return w, h
    return gr.skip(), gr.skip()


def _follow_size(label: str, w: float, h: float) -> str:
    """A size typed by hand that the chosen preset does not have makes the preset Custom."""
    chosen = next(((pw, ph) for name, pw, ph in text.PRESETS if name == label), None)
    return label if chosen == (w, h) else text.CUSTOM


def _load_examples() -> list[str]:
    """The example product-shot prompts in assets/."""
    return parse_prompts(EXAMPLES_FILE.read_text("utf-8")) if EXAMPLES_FILE.is_file() else []
