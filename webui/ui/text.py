"""What the page shows, as text and values: summaries, table rows, outputs and form values.

Everything here is a pure function of a job record, a view or a request, so the page's
handlers (webui/ui/page.py) stay short and the wording lives in one place.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from webui.jobs.execute import SHEET_NAME, ZIP_NAME
from webui.jobs.record import JobRecord
from webui.jobs.store import JobSummary
from webui.jobs.views import Identity, JobView, about
from webui.prompts import TemplateError, count_prompts, parse_prompts
from webui.request import GenerationRequest
from webui.settings import MAX_PROMPT_CHARS, SEED_PER_IMAGE

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
DEMO_BANNER = (
    "**Demo model loaded.** This server runs the built-in tiny model with random weights "
    "(no CUDA GPU was found, or it was asked for): images are coloured noise. "
    "Set `ZIMAGE_MODEL=Tongyi-MAI/Z-Image-Turbo` on a GPU machine for real images."
)
EXPOSED_BANNER = (
    "**Open to the network without a login.** This server listens on {host}: anyone who can "
    "reach it can generate images. An admin can set ZIMAGE_AUTH_USER and ZIMAGE_AUTH_PASSWORD."
)
HISTORY_COLUMNS = ("when (UTC)", "status", "prompts", "images", "size", "user", "request")
QUEUE_COLUMNS = ("#", "status", "owner", "prompt", "images", "ETA", "stop", "job")
STOP_COLUMN = QUEUE_COLUMNS.index("stop")
STAR = "★ "  # before a starred image's caption


def preset_for(width: int, height: int) -> str:
    """The preset label of a size, or Custom."""
    return next((label for label, w, h in PRESETS if (w, h) == (width, height)), CUSTOM)


def count_text(text: str, per_prompt: float, max_prompts: int, max_images: int) -> str:
    """The live line under the prompt box: prompts x variants = images."""
    try:
        n = count_prompts(text or "")
    except TemplateError as exc:
        return f"**{exc}**"
    per = int(per_prompt or 1)
    images = n * per
    over = n > max_prompts or images > max_images
    warning = f" **over the limit** ({max_prompts} prompts, {max_images} images)" if over else ""
    return f"{n} prompt{'s' * (n != 1)} x {per} = **{images} image{'s' * (images != 1)}**{warning}"


def request_from_form(
    max_prompts: int,
    prompts: str,
    images_per_prompt: float,
    seed: float | None,
    width: float,
    height: float,
    steps: float,
    guidance_scale: float,
    negative_prompt: str,
    style: str,
    seed_policy: str,
) -> GenerationRequest:
    """The request the form's values make; ValueError names what is wrong."""
    # Gradio does not hold a textbox to any length on the server: check before parsing.
    box_limit = max_prompts * (MAX_PROMPT_CHARS + 1)
    for name, value, most in (
        ("The prompt box", prompts, box_limit),
        ("The negative prompt", negative_prompt, MAX_PROMPT_CHARS),
        ("The style", style, MAX_PROMPT_CHARS),
    ):
        if len(value or "") > most:
            raise ValueError(f"{name} holds {len(value):,} characters; the limit is {most:,}.")
    return GenerationRequest(
        prompts=parse_prompts(prompts or "", limit=max_prompts),
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


def _whole(name: str, value: float) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number (got {value}).")
    return int(number)


def form_values(request: GenerationRequest) -> dict[str, Any]:
    """The Generate form as `request` fills it, by field name (the preset follows the size)."""
    values = request.to_record()
    values["prompts"] = "\n".join(request.prompts)
    values["preset"] = preset_for(request.width, request.height)
    return values


def summary(record: JobRecord) -> str:
    """One line about a finished job: what was made, how fast, which seeds."""
    made, planned, elapsed = len(record.saved), len(record.images), record.elapsed_s
    rate = made / elapsed if elapsed else 0.0
    seeds = [image.seed for image in record.images]
    low, high = min(seeds), max(seeds)
    seed_text = f"seeds {low}..{high}" if high > low else f"seed {low}"
    images = f"{made} image{'s' * (made != 1)}"
    head = f"Stopped: {made} of {planned} images kept" if record.status == "stopped" else images
    note = " (demo model)" if record.demo else ""
    black = ""
    if record.black_seeds:
        n = len(record.black_seeds)
        black = (
            f". {n} image{'s' * (n != 1)} came out black and {'were' if n != 1 else 'was'} not saved "
            f"(seed{'s' * (n != 1)} {', '.join(map(str, record.black_seeds))})"
        )
    resumed = f", resumed {record.resumed}x" if record.resumed else ""
    return (
        f"{head} in {elapsed:.1f} s, {rate:.2f} images/s, {seed_text}{note}{black} (job {record.id}{resumed})"
    )


def outputs(record: JobRecord) -> dict[str, Any]:
    """A job's results by name: the gallery (captioned, starred images marked), the summary,
    per-image details, the download (the zip, or the PNG itself for one image), the contact
    sheet."""
    saved, r = record.saved, record.request
    gallery = [(str(record.path_of(i)), caption(record.prompt_of(i), i.seed, i.starred)) for i in saved]
    details = [
        {
            "prompt": record.prompt_of(i),
            "seed": i.seed,
            "width": r.width,
            "height": r.height,
            "steps": r.steps,
            "file": str(record.path_of(i)),  # not "path": Gradio takes that for a FileData
            "job_id": record.id,
            "index": i.index,
            "starred": i.starred,
        }
        for i in saved
    ]
    download = sheet = None
    if len(saved) == 1:
        download = str(record.path_of(saved[0]))
    elif saved:
        download, sheet = str(record.folder / ZIP_NAME), str(record.folder / SHEET_NAME)
    return {
        "gallery": gallery,
        "summary": summary(record),
        "details": details,
        "download": download,
        "sheet": sheet,
    }


def caption(prompt: str, seed: int, starred: bool) -> str:
    """An image's caption in the grid: "★ a red mug (seed 42)" when starred."""
    return f"{STAR if starred else ''}{prompt} (seed {seed})"


def picked_line(image: dict[str, Any]) -> str:
    """The line under the picked image's prompt: seed, size and file."""
    return f"seed {image['seed']} · {image['width']}x{image['height']} · `{image['file']}`"


def job_status(record: JobRecord, view: JobView | None, notice: str | None = None) -> dict[str, Any]:
    """A job for scripts (`/job`): status, progress, position, and every image made so far;
    `notice` says why an unfinished job is not moving (no worker online, broker away)."""
    r = record.request
    live = view is not None and not view.finished
    return {
        "job_id": record.id,
        "status": view.status if live else record.status,
        "error": record.error,
        "created": record.created.isoformat(),
        "user": record.owner,
        "images_done": record.done_count,
        "images_total": len(record.images),
        "progress": round(view.fraction, 4) if live else 1.0,
        "position": view.position if live else None,
        "eta_s": None if not live or view.eta_done_s is None else round(view.eta_done_s, 1),
        "folder": str(record.folder),
        "resumed": record.resumed,
        "notice": notice if live else None,
        "workers": view.where if live and view is not None else "",
        "images": [
            {
                "prompt": record.prompt_of(i),
                "seed": i.seed,
                "width": r.width,
                "height": r.height,
                "file": str(record.path_of(i)),
            }
            for i in record.saved
        ],
    }


def history_row(job: JobSummary) -> list:
    prompts = job.first_prompt + (f" (+{job.prompt_count - 1} more)" if job.prompt_count > 1 else "")
    when = job.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    images = f"{job.images_done} of {job.images_total}"
    return [when, job.status, prompts, images, f"{job.width}x{job.height}", job.owner or "", job.id]


def queue_row(view: JobView, who: Identity) -> list:
    """A row of the Queue panel; `who` is the person looking at it."""
    mine = who.owns(view)
    if view.owner:
        owner = f"{view.owner} (you)" if mine else view.owner
    else:
        owner = "you" if mine else "someone else"
    more = f" (+{view.prompt_count - 1} more)" if view.prompt_count > 1 else ""
    eta = "" if view.eta_done_s is None else about(view.eta_done_s)
    position = "" if view.position is None else str(view.position)
    images = f"{view.images_done} of {view.images_total}"
    return [
        position,
        f"{view.status} on {view.where}" if view.where else view.status,
        owner,
        view.first_prompt + more,
        images,
        eta,
        "■ Stop" if mine else "",
        view.id,
    ]
