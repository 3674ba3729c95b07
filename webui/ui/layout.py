"""The Gradio page: components laid out and wired to a `Page`'s handlers. It loads no model.

Each part of the page is built by a function that returns its components by name; the
wiring functions then connect them to the handlers. Events that wait on a job (`/generate`,
following a job on load) are async handlers with no concurrency limit: they hold no worker
thread, and our job queue, not Gradio's, decides what runs. Light events that read memory
or disk are not queued at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from webui.prompts import parse_prompts
from webui.ui import text
from webui.ui.form import Parts, form_part, more_part
from webui.ui.i18n import t
from webui.ui.page import Page

MAX_GRID_COLUMNS = 8  # more variants than this wrap onto further rows of the gallery
WRAP_COLUMNS = 4  # images a row when each prompt has one
TITLE = "Z-Image-Turbo"
FORM_MIN_WIDTH, RESULTS_MIN_WIDTH = 360, 480  # pixels: below both together, one column
# Ctrl+Enter and the tab's title: run once on page load (the server passes it to Gradio).
PAGE_SCRIPT = Path(__file__).with_name("page.js").read_text("utf-8")
QUEUE_REFRESH_S = 1.5  # the Queue panel's timer: one light request per page
EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "assets" / "example_prompts.txt"
QUIET: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
# The form's fields in the order their values come back to scripts (/reuse_png).
FORM_FIELDS = (
    "prompts",
    "images_per_prompt",
    "seed",
    "seed_policy",
    "preset",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "negative_prompt",
    "style",
)
# The inputs of /generate and /submit, in their order.
GENERATE_INPUTS = (
    "prompts",
    "images_per_prompt",
    "seed",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "negative_prompt",
    "style",
    "seed_policy",
)
RESULTS = ("gallery", "summary", "details", "download", "sheet")


def create_demo(page: Page, model_label: str, is_demo: bool, browser_key: str) -> gr.Blocks:
    """The page, wired to `page`. Queueing and serving are the caller's business.

    `browser_key` encrypts the browser's id in its local storage; it must stay the same
    across restarts, or every browser would look new after one.
    """
    s = page.settings
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        c: Parts = {
            "browser_id": gr.BrowserState(None, storage_key="zimage-webui-browser", secret=browser_key)
        }
        gr.Markdown(f"## Z-Image-Turbo &nbsp; <small>{model_label}</small>")
        if is_demo:
            gr.Markdown(text.DEMO_BANNER, elem_id="demo-banner")
        if s.exposed_without_login:
            gr.Markdown(text.EXPOSED_BANNER.format(host=s.host), elem_id="exposed-banner")
        with gr.Tabs() as c["tabs"]:
            # Two columns on a wide screen (the form, the results beside it); Gradio wraps them
            # into one column when the window is narrower than both minimum widths.
            with (
                gr.Tab(t("tab_generate"), id="generate"),
                gr.Row(equal_height=False, elem_id="generate-columns"),
            ):
                with gr.Column(scale=2, min_width=FORM_MIN_WIDTH, elem_id="form-column"):
                    c |= form_part(s) | more_part(s, text.QUEUE_COLUMNS)
                with gr.Column(scale=3, min_width=RESULTS_MIN_WIDTH, elem_id="results-column"):
                    c |= _results(c["prompts"])
            with gr.Tab(t("tab_history"), id="history", elem_id="history-tab") as c["history_tab"]:
                c |= _history()
        page.form = {name: c[name] for name in FORM_FIELDS} | {"tabs": c["tabs"]}
        _wire_scripts(page)  # first, so that these API names are theirs
        _wire_jobs(page, demo, c)
        _wire_form(page, c)
        _wire_history(page, demo, c)
    return demo


def _results(prompts: gr.Textbox) -> Parts:
    c: Parts = {"summary": gr.Markdown(elem_id="summary")}
    # A grid: one row per prompt, one column per variant (set per result).
    c["gallery"] = gr.Gallery(label=t("results"), format="png", columns=4, height="auto", elem_id="gallery")
    # The image picked in the grid (Gradio shows it large) and what to do with it.
    c["picked"] = gr.State(None)
    c["pick_info"] = gr.Markdown(elem_id="picked")
    with gr.Row():
        c["use_seed"] = gr.Button(t("use_seed"), size="sm", elem_id="use-seed")
        c["more_like"] = gr.Button(t("more_like"), size="sm", elem_id="more-like")
    with gr.Row():
        c["download"] = gr.DownloadButton(t("download_all"), value=None, elem_id="download")
        c["sheet"] = gr.DownloadButton(t("contact_sheet"), value=None, elem_id="contact-sheet")
    c["details"] = gr.JSON(label=t("details"), visible=False)
    lines = _load_examples()
    if lines:
        # Each product shot alone, and the whole set as one multi-prompt request.
        examples = [[line] for line in lines] + [["\n".join(lines)]]
        labels = [*lines, f"All {len(lines)} product shots"]
        gr.Examples(examples, inputs=[prompts], example_labels=labels, label=t("examples"))
    return c


def _history() -> Parts:
    gr.Markdown(t("history_intro"))
    c: Parts = {"refresh": gr.Button(t("refresh"), size="sm", elem_id="history-refresh")}
    c["table"] = gr.Dataframe(
        headers=list(text.HISTORY_COLUMNS), interactive=False, wrap=True, elem_id="history-table"
    )
    c["chosen"] = gr.Textbox(visible=False)  # the job id picked in the table
    c["past_gallery"] = gr.Gallery(
        label=t("images"), format="png", columns=4, height="auto", elem_id="history-gallery"
    )
    with gr.Row():
        c["reuse_past"] = gr.Button(t("load_settings"), elem_id="history-reuse")
        c["past_zip"] = gr.DownloadButton(t("download_zip"), value=None, elem_id="history-zip")
    return c


def _wire_scripts(page: Page) -> None:
    """For scripts: jobs by id, the history."""
    for fn, name in (
        (page.submit, "submit"),
        (page.job, "job"),
        (page.jobs, "jobs"),
        (page.stop_job, "stop_job"),
        (page.history, "history"),
        (page.history_request, "history_request"),
        (page.history_reuse, "history_reuse"),
    ):
        gr.api(fn, api_name=name)


def _wire_jobs(page: Page, demo: gr.Blocks, c: Parts) -> None:
    """Generate, Stop, following a job, the Queue panel."""
    results = [c[name] for name in RESULTS]
    # Waiting on a job: async, no concurrency limit (our queue decides), progress shown.
    c["generate"].click(
        page.generate,
        [c[name] for name in GENERATE_INPUTS],
        results,
        api_name="generate",
        concurrency_limit=None,
    ).then(_grid, c["images_per_prompt"], c["gallery"], **QUIET).then(page.history, None, c["table"], **QUIET)
    # On load, first who this browser is; then its panel, and its newest unfinished job followed.
    identified = demo.load(page.identify, c["browser_id"], c["browser_id"], **QUIET)
    identified.then(page.queue_rows, None, c["queue_table"], **QUIET)
    identified.then(
        page.attach, None, results, concurrency_limit=None, show_progress="full", api_visibility="private"
    )
    c["stop"].click(page.stop, api_name="stop", queue=False, show_progress="hidden")
    gr.Timer(QUEUE_REFRESH_S).tick(page.queue_rows, None, c["queue_table"], **QUIET)
    c["queue_table"].select(page.stop_from_queue, None, None, **QUIET)


def _wire_form(page: Page, c: Parts) -> None:
    """The form's own behaviour: counts, presets, prompt files, reusing a PNG."""
    s = page.settings

    def update_count(prompt_text: str, per_prompt: float) -> str:
        return text.count_text(prompt_text, per_prompt, s.max_prompts, s.max_images)

    for trigger in (c["prompts"].change, c["images_per_prompt"].change):
        trigger(update_count, [c["prompts"], c["images_per_prompt"]], c["count"], **QUIET)
    c["preset"].change(_apply_preset, c["preset"], [c["width"], c["height"]], **QUIET)
    for field in (c["width"], c["height"]):  # .input: by hand only, not when a preset sets them
        field.input(_follow_size, [c["preset"], c["width"], c["height"]], c["preset"], **QUIET)
    c["prompt_file"].upload(
        page.load_prompts, c["prompt_file"], c["prompts"], api_name="load_prompts", show_progress="hidden"
    )
    c["gallery"].select(_picked, c["details"], [c["picked"], c["pick_info"]], **QUIET)
    form = [c[name] for name in FORM_FIELDS]
    c["use_seed"].click(page.use_seed, [c["details"], c["picked"]], form, **QUIET)
    c["more_like"].click(page.more_like, [c["details"], c["picked"]], form, **QUIET)
    c["reuse"].upload(
        page.reuse_png,
        c["reuse"],
        [c[name] for name in FORM_FIELDS],
        api_name="reuse_png",
        show_progress="hidden",
    )


def _wire_history(page: Page, demo: gr.Blocks, c: Parts) -> None:
    for trigger in (c["refresh"].click, c["history_tab"].select, demo.load):
        trigger(page.history, None, c["table"], **QUIET)
    c["table"].select(_pick, None, c["chosen"], **QUIET).then(
        page.history_request, c["chosen"], [c["past_gallery"], c["past_zip"]], **QUIET
    )
    c["reuse_past"].click(page.reuse_history_into_form, c["chosen"], list(page.form.values()), **QUIET)


def _grid(per_prompt: float) -> gr.Gallery:
    """A column per variant: prompt-then-variant order then makes a row per prompt. With one
    image per prompt, a wrapping grid instead of one image a row."""
    per = int(per_prompt or 1)
    return gr.Gallery(columns=WRAP_COLUMNS if per == 1 else min(per, MAX_GRID_COLUMNS))


def _picked(details: list[dict] | None, event: gr.SelectData) -> tuple[int, str]:
    """The picked image's number in the grid, and a line about it: prompt, seed, size, file."""
    image = (details or [])[event.index]
    size = f"{image['width']}x{image['height']}"
    line = f"**{image['prompt']}** · seed {image['seed']} · {size} · `{image['file']}`"
    return event.index, line


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
