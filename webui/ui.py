"""The Gradio page. It receives a ready engine and never loads a model itself.

`/generate` is the one event that touches the GPU: it runs in the concurrency group "gpu"
with limit 1, so requests wait in Gradio's queue (which shows position and ETA) and reach
the engine one at a time. Stop finds the running request of the same browser session and
asks the engine to stop at the next step; the images finished by then are returned. Closing
the tab does the same, and its requests still in the queue are dropped.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC
from pathlib import Path

import gradio as gr

from webui.engine import Engine, GenerationRequest, GenerationResult, Progress, RequestError
from webui.history import PastRequest, past_requests
from webui.outputs import SheetCell, read_png_parameters, write_contact_sheet, write_zip
from webui.prompts import PROMPT_FILE_TYPES, TemplateError, count_prompts, parse_prompts, prompts_from_file
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    SEED_PER_IMAGE,
    SEED_PER_VARIANT,
    SIZE_MULTIPLE,
    Settings,
)

logger = logging.getLogger(__name__)

GPU_GROUP = "gpu"
PROMPT_FILE_MAX_BYTES = 1_000_000  # below the server's upload cap, so that this message is the one seen
MAX_GRID_COLUMNS = 8  # more variants than this wrap onto further rows of the gallery
CUSTOM = "Custom"
# The official 1024-based presets of the Z-Image demo: (label, width, height).
PRESETS = [
    ("1:1 (1024x1024)", 1024, 1024),
    ("9:7 (1152x896)", 1152, 896),
    ("7:9 (896x1152)", 896, 1152),
    ("4:3 (1152x864)", 1152, 864),
    ("3:4 (864x1152)", 864, 1152),
    ("3:2 (1248x832)", 1248, 832),
    ("2:3 (832x1248)", 832, 1248),
    ("16:9 (1280x720)", 1280, 720),
    ("9:16 (720x1280)", 720, 1280),
    ("21:9 (1344x576)", 1344, 576),
    ("9:21 (576x1344)", 576, 1344),
]
EXAMPLES_FILE = Path(__file__).resolve().parents[1] / "assets" / "example_prompts.txt"
DEMO_BANNER = (
    "**Demo model loaded.** This server runs the built-in tiny model with random weights "
    "(no CUDA GPU was found, or it was asked for): images are coloured noise. "
    "Set `ZIMAGE_MODEL=Tongyi-MAI/Z-Image-Turbo` on a GPU machine for real images."
)

EXPOSED_BANNER = (
    "**Open to the network without a login.** This server listens on {host}: anyone who can "
    "reach it can generate images. An admin can set ZIMAGE_AUTH_USER and ZIMAGE_AUTH_PASSWORD."
)


class _RunningRequests:
    """The cancel flag of each browser session's running request, for the Stop button."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

    def finish(self, session: str, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]

    def stop(self, session: str) -> bool:
        with self._lock:
            flag = self._flags.get(session)
        if flag is not None:
            flag.set()
        return flag is not None


def create_demo(engine: Engine) -> gr.Blocks:
    """The page, wired to `engine`. Queueing and serving are the caller's business."""
    settings = engine.settings
    running = _RunningRequests()

    with gr.Blocks(title="Z-Image-Turbo", analytics_enabled=False) as demo:
        gr.Markdown(f"## Z-Image-Turbo &nbsp; <small>{engine.model.label}</small>")
        if engine.model.is_demo:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        if settings.exposed_without_login:
            gr.Markdown(EXPOSED_BANNER.format(host=settings.host), elem_id="exposed-banner")
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
                count = gr.Markdown(
                    _count_text("", 1, settings.max_prompts, settings.max_images), elem_id="count"
                )
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
                        [label for label, _, _ in PRESETS] + [CUSTOM],
                        value=PRESETS[0][0],
                        label="Resolution",
                        elem_id="resolution",
                    )
                with gr.Row():
                    width = gr.Slider(
                        settings.min_size,
                        settings.max_size,
                        value=DEFAULT_SIZE,
                        step=SIZE_MULTIPLE,
                        label="Width",
                        elem_id="width",
                    )
                    height = gr.Slider(
                        settings.min_size,
                        settings.max_size,
                        value=DEFAULT_SIZE,
                        step=SIZE_MULTIPLE,
                        label="Height",
                        elem_id="height",
                    )
                    steps = gr.Slider(
                        settings.min_steps,
                        settings.max_steps,
                        value=DEFAULT_STEPS,
                        step=1,
                        label="Steps (8 for Turbo)",
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
                    "Past requests, newest first, read from the output folder (so they survive restarts). "
                    "Pick one to see its images, download them, or load its settings into the form."
                )
                refresh = gr.Button("Refresh", size="sm", elem_id="history-refresh")
                table = gr.Dataframe(
                    headers=list(HISTORY_COLUMNS), interactive=False, wrap=True, elem_id="history-table"
                )
                chosen = gr.Textbox(visible=False)  # the request id picked in the table
                past_gallery = gr.Gallery(
                    label="Images", format="png", columns=4, height="auto", elem_id="history-gallery"
                )
                with gr.Row():
                    reuse_past = gr.Button("Load these settings into the form", elem_id="history-reuse")
                    past_zip = gr.DownloadButton("Download (zip)", value=None, elem_id="history-zip")

        def generate(
            prompts: str,
            images_per_prompt: float,
            seed: float | None,
            width: float,
            height: float,
            steps: float,
            guidance_scale: float,
            negative_prompt: str = "",
            style: str = "",
            seed_policy: str = SEED_PER_IMAGE,
            request: gr.Request = None,
            progress: gr.Progress = gr.Progress(),  # noqa: B008
        ) -> tuple:
            """Generate images for every prompt (one per line) and return them with their seeds."""
            # Gradio does not hold a textbox to any length on the server: check before parsing.
            box_limit = settings.max_prompts * (MAX_PROMPT_CHARS + 1)
            for name, text, most in (
                ("The prompt box", prompts, box_limit),
                ("The negative prompt", negative_prompt, MAX_PROMPT_CHARS),
                ("The style", style, MAX_PROMPT_CHARS),
            ):
                if len(text or "") > most:
                    raise gr.Error(f"{name} holds {len(text):,} characters; the limit is {most:,}.")
            try:
                job = GenerationRequest(
                    prompts=parse_prompts(prompts or "", limit=settings.max_prompts),
                    images_per_prompt=_whole("Images per prompt", images_per_prompt),
                    seed=-1 if seed is None else _whole("Seed", seed),
                    width=_whole("Width", width),
                    height=_whole("Height", height),
                    steps=_whole("Steps", steps),
                    guidance_scale=float(guidance_scale),
                    negative_prompt=negative_prompt or "",
                    style=style or "",
                    seed_policy=seed_policy or SEED_PER_IMAGE,
                )
            except ValueError as exc:  # TemplateError included
                raise gr.Error(str(exc)) from None

            def report(p: Progress) -> None:
                first, last = p.images_done + 1, p.images_done + p.chunk_images
                images = f"image {first}" if first == last else f"images {first}-{last}"
                progress(p.fraction, desc=f"{images} of {p.images_total}, step {p.step} of {p.steps}")

            progress(0, desc="waiting for the GPU")  # until the lane reaches this request
            session = request.session_hash if request is not None else None
            flag = running.start(session) if session else threading.Event()
            try:
                user = request.username if request is not None else None  # set when the login is on
                result = engine.generate(job, on_progress=report, cancel=flag, user=user)
            except RequestError as exc:
                raise gr.Error(str(exc)) from None
            finally:
                if session:
                    running.finish(session, flag)
            return _outputs(result)

        def load_prompts(file: str | None) -> str:
            """The prompt box from an uploaded file: a .txt as it is, a .csv's prompt column."""
            if not file:
                return gr.skip()
            path = Path(file)  # Gradio keeps the uploaded file's name
            try:
                return prompts_from_file(path.name, path.read_bytes(), PROMPT_FILE_MAX_BYTES)
            except ValueError as exc:
                raise gr.Error(str(exc)) from None

        prompt_file.upload(
            load_prompts, prompt_file, prompts, api_name="load_prompts", show_progress="hidden"
        )

        def reuse_png(file: str | None) -> tuple:
            """The form as it was for one PNG we made: its prompt, seed and settings, one image."""
            if not file:
                return (gr.skip(),) * 11
            try:
                p = read_png_parameters(Path(file))
            except (KeyError, OSError, ValueError):
                raise gr.Error("This PNG carries no Z-Image WebUI parameters (or is not a PNG).") from None
            size = _preset_for(p["width"], p["height"])
            return (
                p["prompt"],
                1,
                p["seed"],
                SEED_PER_IMAGE,
                size,
                p["width"],
                p["height"],
                p["steps"],
                p["guidance_scale"],
                p.get("negative_prompt", ""),
                p.get("style", ""),
            )

        form = [
            prompts,
            images_per_prompt,
            seed,
            seed_policy,
            preset,
            width,
            height,
            steps,
            guidance_scale,
            negative_prompt,
            style,
        ]
        reuse.upload(reuse_png, reuse, form, api_name="reuse_png", show_progress="hidden")

        def list_history() -> list[list]:
            """The History table: past requests on disk, newest first."""
            return [_history_row(past) for past in past_requests(settings.output_dir, HISTORY_LIMIT)]

        def pick(event: gr.SelectData) -> str:
            return event.row_value[-1]  # the request id, the table's last column

        def open_request(request_id: str) -> tuple:
            """A past request's images (captioned) and a zip of them."""
            past = _find_request(settings.output_dir, request_id)
            shown = [
                (past.folder / i["file"], f"{i['prompt']} (seed {i['seed']})")
                for i in past.manifest["images"]
            ]
            shown = [(str(path), caption) for path, caption in shown if path.is_file()]
            bundle = past.folder / "images.zip"  # written by the request itself when it had 2+ images
            if shown and not bundle.is_file():
                write_zip([Path(path) for path, _ in shown], bundle)
            return shown, bundle if shown else None

        def reuse_request(request_id: str) -> tuple:
            """The form as a past request had it (prompts as expanded), and back to the Generate tab."""
            m = _find_request(settings.output_dir, request_id).manifest
            size = _preset_for(m["width"], m["height"])
            return (
                "\n".join(m["prompts"]),
                m["images_per_prompt"],
                m["seed"],
                m["seed_policy"],
                size,
                m["width"],
                m["height"],
                m["steps"],
                m["guidance_scale"],
                m["negative_prompt"],
                m["style"],
                gr.Tabs(selected="generate"),
            )

        for trigger in (refresh.click, history_tab.select, demo.load):
            trigger(list_history, None, table, queue=False, show_progress="hidden", api_visibility="private")
        # Not queued: light disk reads that must not wait behind, or be refused by, a full GPU queue.
        table.select(pick, None, chosen, queue=False, show_progress="hidden", api_visibility="private").then(
            open_request,
            chosen,
            [past_gallery, past_zip],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        reuse_past.click(
            reuse_request,
            chosen,
            [*form, tabs],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        # For scripts and tests: the same, by request id.
        gr.api(list_history, api_name="history")
        gr.api(open_request, api_name="history_request")
        gr.api(reuse_request, api_name="history_reuse")

        def stop(request: gr.Request) -> None:
            if running.stop(request.session_hash):
                gr.Info("Stopping after the current step; finished images are kept.")

        def closed(request: gr.Request) -> None:
            """The tab went away (its heartbeat connection dropped): stop its running request.

            Gradio drops the session's requests still waiting in the queue by itself.
            """
            if running.stop(request.session_hash):
                logger.info("A browser tab closed: stopping its running request at the next step")

        def grid(per_prompt: float) -> gr.Gallery:
            """A column per variant: prompt-then-variant order then makes a row per prompt."""
            return gr.Gallery(columns=max(1, min(int(per_prompt or 1), MAX_GRID_COLUMNS)))

        generate_button.click(
            generate,
            inputs=[
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
            ],
            outputs=[gallery, summary, details, download, sheet],
            api_name="generate",
            concurrency_id=GPU_GROUP,
            concurrency_limit=active_requests(settings),
        ).then(
            grid, images_per_prompt, gallery, queue=False, show_progress="hidden", api_visibility="private"
        ).then(list_history, None, table, queue=False, show_progress="hidden", api_visibility="private")
        stop_button.click(stop, api_name="stop", queue=False, show_progress="hidden")
        demo.unload(closed)

        def update_count(text: str, per_prompt: float) -> str:
            return _count_text(text, per_prompt, settings.max_prompts, settings.max_images)

        for trigger in (prompts.change, images_per_prompt.change):
            trigger(
                update_count,
                [prompts, images_per_prompt],
                count,
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )

        def apply_preset(label: str) -> tuple:
            for name, w, h in PRESETS:
                if name == label:
                    return w, h
            return gr.skip(), gr.skip()

        preset.change(
            apply_preset,
            preset,
            [width, height],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )

        def follow_size(label: str, w: float, h: float) -> str:
            """A size typed by hand that the chosen preset does not have makes the preset Custom."""
            chosen = next(((pw, ph) for name, pw, ph in PRESETS if name == label), None)
            return label if chosen == (w, h) else CUSTOM

        for field in (width, height):  # .input: by hand only, not when a preset sets them
            field.input(
                follow_size,
                [preset, width, height],
                preset,
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )
    return demo


def _preset_for(width: int, height: int) -> str:
    """The preset label of a size, or Custom."""
    return next((label for label, w, h in PRESETS if (w, h) == (width, height)), CUSTOM)


HISTORY_COLUMNS = ("when (UTC)", "status", "prompts", "images", "size", "user", "request")
HISTORY_LIMIT = 200


def _history_row(past: PastRequest) -> list:
    m = past.manifest  # .get: a manifest from another version may lack a field
    listed = m.get("prompts") or ["?"]
    prompts = listed[0] + (f" (+{len(listed) - 1} more)" if len(listed) > 1 else "")
    planned = len(listed) * m.get("images_per_prompt", 1)
    when = past.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [
        when,
        m.get("status", "?"),
        prompts,
        f"{len(m['images'])} of {planned}",
        f"{m.get('width', '?')}x{m.get('height', '?')}",
        m.get("user") or "",
        m.get("request_id", "?"),
    ]


def _find_request(output_dir: Path, request_id: str) -> PastRequest:
    past = next((p for p in past_requests(output_dir) if p.manifest["request_id"] == request_id), None)
    if past is None:
        raise gr.Error(f"No request {request_id!r} in the history (deleted, or never finished).")
    return past


def active_requests(settings: Settings) -> int:
    """Requests let through the queue to the engine at once.

    The engine's lane makes one pipeline call at a time whatever this is; with cross-user
    batching it needs enough requests in hand to fill the next call while one runs.
    """
    return 2 * settings.max_batch_size if settings.cross_batching else 1


def _whole(name: str, value: float) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number (got {value}).")
    return int(number)


def _count_text(text: str, per_prompt: float, max_prompts: int, max_images: int) -> str:
    try:
        n = count_prompts(text or "")
    except TemplateError as exc:
        return f"**{exc}**"
    images = n * int(per_prompt or 1)
    over = n > max_prompts or images > max_images
    warning = f" **over the limit** ({max_prompts} prompts, {max_images} images)" if over else ""
    count = f"{n} prompt{'s' * (n != 1)} x {int(per_prompt or 1)}"
    return f"{count} = **{images} image{'s' * (images != 1)}**{warning}"


def _outputs(result: GenerationResult) -> tuple:
    """The gallery, summary line, per-image details, zip and contact sheet of a result, as
    /generate returns them."""
    gallery = [(str(i.path), f"{i.prompt} (seed {i.seed})") for i in result.images]
    request = result.request
    details = [
        {
            "prompt": i.prompt,
            "seed": i.seed,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "file": str(i.path),
        }  # not "path": Gradio takes that for a FileData
        for i in result.images
    ]
    download = None  # "Download all": the zip, or the PNG itself when there is only one
    if len(result.images) == 1:
        download = str(result.images[0].path)
    elif result.images:
        download = str(write_zip([i.path for i in result.images], result.output_dir / "images.zip"))
    sheet = str(_contact_sheet(result)) if len(result.images) > 1 else None  # nothing to compare
    return gallery, _summary(result), details, download, sheet


def _contact_sheet(result: GenerationResult) -> Path:
    """The comparison grid as one PNG in the request's folder; a missing image leaves a gap."""
    request, made = result.request, {i.index: i for i in result.images}
    per = request.images_per_prompt
    rows = []
    for p, prompt in enumerate(request.prompts):
        cells = []
        for j in range(per):
            seed = result.seeds[p * per + j]
            image = made.get(p * per + j)
            cells.append(
                SheetCell(image.image if image else None, f"seed {seed}" + ("" if image else ": not made"))
            )
        rows.append((request.text_of(prompt), cells))
    return write_contact_sheet(rows, result.output_dir / "contact-sheet.png")


def _summary(result: GenerationResult) -> str:
    made, planned = len(result.images), len(result.seeds)
    rate = made / result.elapsed_s if result.elapsed_s else 0.0
    low, high = min(result.seeds), max(result.seeds)
    seeds = f"seeds {low}..{high}" if high > low else f"seed {low}"
    stopped = (
        f"Stopped: {made} of {planned} images kept"
        if result.cancelled
        else f"{made} image{'s' * (made != 1)}"
    )
    note = " (demo model)" if result.is_demo else ""
    black = ""
    if result.black_seeds:
        n = len(result.black_seeds)
        black = (
            f". {n} image{'s' * (n != 1)} came out black and {'were' if n != 1 else 'was'} not saved "
            f"(seed{'s' * (n != 1)} {', '.join(map(str, result.black_seeds))})"
        )
    return f"{stopped} in {result.elapsed_s:.1f} s, {rate:.2f} images/s, {seeds}{note}{black}"


def _load_examples() -> list[str]:
    """The example product-shot prompts in assets/."""
    return parse_prompts(EXAMPLES_FILE.read_text("utf-8")) if EXAMPLES_FILE.is_file() else []
