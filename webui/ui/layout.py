"""The Gradio page, put together from its parts and wired to a `Page`'s handlers. It loads no
model.

The parts: the form (webui/ui/form.py), the results (results.py), the Queue panel (queue.py)
and History (history.py); their words come from i18n.py and text.py. Events that wait on a
job (`/generate`, following a job on load) are async handlers with no concurrency limit: they
hold no worker thread, and our job queue, not Gradio's, decides what runs. Every event goes
through Gradio's queue (parts.QUIET says why).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.prompts import parse_prompts
from webui.request import FORM_FIELDS as REQUEST_FORM_FIELDS
from webui.ui.form import advanced_part, form_part, reuse_part, wire_form
from webui.ui.history import History
from webui.ui.i18n import t
from webui.ui.inputs_part import inputs_part, wire_inputs
from webui.ui.looks_part import LORA_INPUTS, looks_part, wire_looks
from webui.ui.model_part import model_part, wire_model
from webui.ui.page import IMAGE_INPUTS, Page
from webui.ui.parts import QUIET, RAW, Parts
from webui.ui.queue import queue_part, wire_queue
from webui.ui.results import Results

TITLE = "Z-Image-Turbo"
CACHE_SWEEP_S = 600  # how often Gradio looks for old uploads and cached files, at most
FORM_MIN_WIDTH, RESULTS_MIN_WIDTH = 360, 480  # pixels: below both together, one column
# Ctrl+Enter and the tab's title: run once on page load (the server passes it to Gradio).
PAGE_SCRIPT = Path(__file__).with_name("page.js").read_text("utf-8")
EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "assets" / "example_prompts.txt"
# The form's fields whose values reuse sets (/reuse_png answers them in this order): the
# request's form fields, the preset, the images a reuse brings back, and the uploads and
# painted photo it clears (the reused job's images take their place), then the LoRA rows.
FORM_FIELDS = (*(f.name for f in REQUEST_FORM_FIELDS), "preset", "reused", "images", "painted", *LORA_INPUTS)
# The inputs of /generate and /submit, in their order (scripts pass them by name or place):
# the request's form fields, then the images and looks sections (Page.generate's parameters).
GENERATE_INPUTS = (*(f.name for f in REQUEST_FORM_FIELDS), *IMAGE_INPUTS, *LORA_INPUTS)


def create_demo(page: Page, model_label: str, is_demo: bool, browser_key: str) -> gr.Blocks:
    """The page, wired to `page`. Queueing and serving are the caller's business.

    `browser_key` encrypts the browser's id in its local storage; it must stay the same
    across restarts, or every browser would look new after one.
    """
    s = page.settings
    # Uploads and the files Gradio copies into its cache are deleted once this old.
    delete_cache = (min(s.cache_max_age, CACHE_SWEEP_S), s.cache_max_age)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=delete_cache) as demo:
        c: Parts = {
            "browser_id": gr.BrowserState(None, storage_key="zimage-webui-browser", secret=browser_key)
        }
        gr.Markdown(f"## Z-Image-Turbo &nbsp; <small>{model_label}</small>")
        if is_demo:
            gr.Markdown(t("demo_banner"), elem_id="demo-banner")
        if page.access.login_on:  # who is signed in, and the way out
            signed_in = gr.Markdown(elem_id="signed-in")
            demo.load(page.signed_in, None, signed_in, **QUIET)
        if s.exposed and not page.access.login_on:
            # One translated key then the address: Gradio translates the key inside the text.
            gr.Markdown(t("exposed_banner") + f" `{s.host}`.", elem_id="exposed-banner")
        with gr.Tabs() as c["tabs"]:
            # Two columns on a wide screen (the form, the results beside it); Gradio wraps them
            # into one column when the window is narrower than both minimum widths.
            with (
                gr.Tab(t("tab_generate"), id="generate"),
                gr.Row(equal_height=False, elem_id="generate-columns"),
            ):
                with gr.Column(scale=2, min_width=FORM_MIN_WIDTH, elem_id="form-column"):
                    c |= model_part() | form_part(s) | inputs_part() | looks_part() | advanced_part(s)
                    c |= reuse_part() | queue_part()
                with gr.Column(scale=3, min_width=RESULTS_MIN_WIDTH, elem_id="results-column"):
                    results = Results(page)
                    _examples(c["prompts"])
            with gr.Tab(t("tab_history"), id="history", elem_id="history-tab") as history_tab:
                history = History(page)
        page.form = {name: c[name] for name in FORM_FIELDS} | {"tabs": c["tabs"]}
        page.results = results
        _wire_scripts(page)  # first, so that these API names are theirs
        _wire_jobs(page, demo, c, results)
        wire_form(page, c)
        wire_inputs(page, c)
        wire_looks(page, demo, c)
        wire_model(page, demo, c)
        results.wire()
        history.wire(demo, history_tab)
    return demo


def _examples(prompts: gr.Textbox) -> None:
    """The example product-shot prompts in assets/: each alone, and the whole set as one request."""
    lines = parse_prompts(EXAMPLES_FILE.read_text("utf-8")) if EXAMPLES_FILE.is_file() else []
    if lines:
        examples = [[line] for line in lines] + [["\n".join(lines)]]
        labels = [*lines, f"All {len(lines)} product shots"]
        gr.Examples(examples, inputs=[prompts], example_labels=labels, label=t("examples"))


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


def _wire_jobs(page: Page, demo: gr.Blocks, c: Parts, results: Results) -> None:
    """Generate, Stop, following this person's job on load, the Queue panel."""
    # Waiting on a job: async, no concurrency limit (our queue decides), progress shown.
    c["generate"].click(
        page.generate,
        [c[name] for name in GENERATE_INPUTS],
        results.generated_outputs,
        api_name="generate",
        concurrency_limit=None,
        **RAW,  # the form's values are checked by text.request_from_form
    ).then(results.shape, results.c["job"], results.shaping, **QUIET)
    # On load, first who this browser is; then its panel, and its newest unfinished job followed.
    identified = demo.load(page.identify, c["browser_id"], c["browser_id"], **QUIET)
    wire_queue(page, identified, c)
    # Followed only when there is a job: an event on the grid for nothing could hide the status
    # of a Generate clicked meanwhile.
    found = gr.State(None)
    identified.then(page.unfinished, None, found, **QUIET)  # queued, as every event: State.change fires
    found.change(
        page.attach,
        found,
        results.shown,
        concurrency_limit=None,
        show_progress="full",
        api_visibility="private",
    )
    # Generate takes the grid over: the old job's image shown large and picked is closed.
    c["generate"].click(results.unpick, None, results.unpicking, **QUIET)
    # Queued like every event (Gradio's direct route is closed), in a group of its own without a
    # limit: Stop gets through however busy the queue is. It takes no input.
    c["stop"].click(page.stop, api_name="stop", concurrency_limit=None, show_progress="hidden")
