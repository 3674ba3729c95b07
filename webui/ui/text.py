"""What the page shows, as text and values: summaries, table rows, outputs and form values.

Everything here is a pure function of a job record, a view or a request, so the page's
handlers (webui/ui/page.py) stay short and the wording lives in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from webui.jobs.record import JobRecord, PlannedImage, Status
from webui.jobs.views import Identity, JobSummary, JobView, about, job_json
from webui.prompts import TemplateError, count_prompts, parse_prompts
from webui.request import FIELDS, FORM_FIELDS, GenerationRequest
from webui.settings import MAX_PROMPT_CHARS, SEED_PER_IMAGE
from webui.ui.looks_part import form_rows
from webui.words import ENGLISH, Message, columns, say, words

CUSTOM = "Custom"
# The official 1024-based presets of the Z-Image demo: (label, width, height).
PRESETS = [
    ("1:1 (1024x1024)", 1024, 1024),
    ("9:7 (1152x896)", 1152, 896),
    ("7:9 (896x1152)", 896, 1152),
    ("4:5 (896x1120)", 896, 1120),  # marketplaces' and social feeds' portrait
    ("4:3 (1152x864)", 1152, 864),
    ("3:4 (864x1152)", 864, 1152),
    ("3:2 (1248x832)", 1248, 832),
    ("2:3 (832x1248)", 832, 1248),
    ("16:9 (1280x720)", 1280, 720),
    ("9:16 (720x1280)", 720, 1280),
    ("21:9 (1344x576)", 1344, 576),
    ("9:21 (576x1344)", 576, 1344),
]
HISTORY_COLUMNS = tuple(columns("history_columns"))
QUEUE_COLUMNS = tuple(columns("queue_columns"))
STOP_COLUMN = QUEUE_COLUMNS.index("stop")
STAR = "★ "  # before a starred image's caption


def preset_for(width: int, height: int) -> str:
    """The preset label of a size, or Custom."""
    return next((label for label, w, h in PRESETS if (w, h) == (width, height)), CUSTOM)


def count_text(
    text: str, per_prompt: float, max_prompts: int, max_images: int, language: str = ENGLISH, sources: int = 0
) -> str:
    """The live line under the prompt box: prompts x variants = images (input images x prompts x
    variants, with input images)."""
    try:
        n = count_prompts(text if isinstance(text, str) else "", limit=max_prompts)
    except TemplateError as exc:
        return f"**{say(exc, language)}**"
    per = int(per_prompt) if isinstance(per_prompt, (int, float)) and 1 <= per_prompt <= max_images else 1
    images = n * per * max(1, sources)
    line = (
        words("count_inputs", sources=sources, n=n, per=per, images=images)
        if sources
        else words("count", n=n, per=per, images=images)
    ).say(language)
    if n > max_prompts or images > max_images:
        line += words("over_limit", prompts=max_prompts, images=max_images).say(language)
    return line


def request_from_form(max_prompts: int, values: Mapping[str, Any]) -> GenerationRequest:
    """The request the form's values make (by field name, the request's form fields); Message
    names what is wrong. Gradio holds no input to any length or type on the server: a script
    may send anything in each, so each value is converted by its field's type."""
    typed: dict[str, Any] = {}
    for field in FORM_FIELDS:
        value = values.get(field.name, field.default)
        name = f"name_{field.name}"
        if field.type is int:
            typed[field.name] = -1 if field.name == "seed" and value is None else _whole(name, value)
        elif field.type is float:
            typed[field.name] = _number(name, value)
        elif value is not None and not isinstance(value, str):
            raise Message("not_text", name=words(name), kind=type(value).__name__)
        elif field.name != "prompts" and len(value or "") > MAX_PROMPT_CHARS:
            raise Message("box_too_long", name=words(name), length=len(value), limit=MAX_PROMPT_CHARS)
        else:
            typed[field.name] = value or field.default if field.spec.choices else value or ""
    # The box is parsed last: it refuses an over-long box unread.
    typed["prompts"] = parse_prompts(typed["prompts"], limit=max_prompts)
    return GenerationRequest(**typed)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Message("not_number", name=words(name), value=shown(value))
    try:
        return float(value)
    except ValueError:
        raise Message("not_number", name=words(name), value=shown(value)) from None


def _whole(name: str, value: Any) -> int:
    number = _number(name, value)
    if not number.is_integer():
        raise Message("not_whole", name=words(name), value=shown(value))
    return int(number)


# What a PNG of ours carries, by type (webui/jobs/record.py: png_parameters): the table's fields.
PNG_FIELDS: dict[str, tuple[type, ...]] = {"prompt": (str,)} | {
    f.name: (int, float) if f.type is float else (f.type,) if f.type in (int, str) else (list,)
    for f in FIELDS
    if f.spec.png
}


def request_from_png(parameters: Any) -> GenerationRequest:
    """The one-image request a PNG's parameters describe; Message when they are not ours."""
    if not isinstance(parameters, dict) or "prompt" not in parameters or "seed" not in parameters:
        raise Message("not_our_png")
    for name, kinds in PNG_FIELDS.items():
        value = parameters.get(name)
        if name in parameters and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise Message("png_field", field=name)
    typed = {name: parameters[name] for name in PNG_FIELDS if name in parameters}
    typed |= {"prompts": [typed.pop("prompt")], "images_per_prompt": 1, "seed_policy": SEED_PER_IMAGE}
    if typed.get("inputs"):  # made from an input image: its name comes along
        name = parameters.get("input_name")
        typed["input_names"] = [name if isinstance(name, str) else "image 1"]
    return GenerationRequest(**typed)


def shown(value: Any) -> str:
    """A value a script sent, as a message may quote it: short, and never a Python repr."""
    text = value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else "?"
    return text if len(text) <= 40 else text[:40] + "..."


def form_values(request: GenerationRequest) -> dict[str, Any]:
    """The Generate form as `request` fills it, by field name (the preset follows the size)."""
    values = {f.name: getattr(request, f.name) for f in FORM_FIELDS}
    values["prompts"] = "\n".join(request.prompts)
    values["reused"] = [
        [d, n] for d, n in zip(request.inputs, request.names, strict=True)
    ]  # the images section
    values["images"] = values["painted"] = None  # uploads of before: the reused job's images replace them
    values["preset"] = preset_for(request.width, request.height)
    return values | form_rows(request.loras)


def summary(record: JobRecord, language: str = ENGLISH) -> str:
    """One line about a finished job: what was made, how fast, which seeds."""
    made, planned, elapsed = len(record.saved), len(record.images), record.elapsed_s
    seeds = [image.seed for image in record.images]
    low, high = min(seeds), max(seeds)
    black = record.black_seeds
    line = words(
        "summary",
        head=words("stopped_made", made=made, planned=planned)
        if record.status == "stopped"
        else words("made", made=made),
        elapsed=elapsed,
        rate=made / elapsed if elapsed else 0.0,
        seeds=words("seed_range", low=low, high=high) if high > low else words("one_seed", low=low),
        demo=words("demo_note") if record.demo else "",
        black=words("black", n=len(black), seeds=", ".join(map(str, black))) if black else "",
        job=record.id,
        resumed=words("resumed", n=record.resumed) if record.resumed else "",
    )
    return line.say(language)


def outputs(record: JobRecord, language: str = ENGLISH) -> dict[str, Any]:
    """A job's results by name: the gallery (captioned, starred images marked), the summary,
    per-image details, the download (the zip, or the PNG itself for one image), the contact
    sheet."""
    saved = record.saved
    gallery = [(str(record.path_of(i)), caption(record.label_of(i), i.seed, i.starred)) for i in saved]
    details = [image_details(record, i) for i in saved]
    download = sheet = None
    if len(saved) == 1:
        download = str(record.path_of(saved[0]))
    elif saved:
        download, sheet = str(record.zip_path), str(record.sheet_path)
    return {
        "gallery": gallery,
        "summary": summary(record, language),
        "details": details,
        "download": download,
        "sheet": sheet,
    }


def image_details(record: JobRecord, image: PlannedImage) -> dict[str, Any]:
    """One saved image, as the picked image's panel and scripts see it."""
    r = record.request
    return {
        "prompt": record.prompt_of(image),
        "input": None if image.input_index is None else record.input_of(image)[1],  # type: ignore[index]
        "seed": image.seed,
        "width": r.width,
        "height": r.height,
        "steps": r.steps,
        "loras": [[name, strength] for name, strength, *_ in r.loras],
        "file": str(record.path_of(image)),  # not "path": Gradio takes that for a FileData
        "job_id": record.id,
        "index": image.index,
        "starred": image.starred,
    }


def caption(prompt: str, seed: int, starred: bool) -> str:
    """An image's caption in the grid: "★ a red mug (seed 42)" when starred."""
    return f"{STAR if starred else ''}{prompt} (seed {seed})"


def picked_line(image: dict[str, Any]) -> str:
    """The line under the picked image's prompt: seed, size, LoRAs and file."""
    looks = "".join(f" · LoRA {name} {strength:g}" for name, strength in image.get("loras", ()))
    return f"seed {image['seed']} · {image['width']}x{image['height']}{looks} · `{image['file']}`"


def job_status(record: JobRecord, view: JobView | None, notice: str | None = None) -> dict[str, Any]:
    """A job for the page's scripts (`/job`): the REST API's shape, each image's URL the page's
    file route; `notice` says why an unfinished job is not moving (no worker online, broker away)."""
    return job_json(
        record, view, url_of=lambda n: f"/gradio_api/file={record.path_of(record.images[n])}", notice=notice
    )


def history_row(job: JobSummary, language: str = ENGLISH) -> list:
    prompts = job.first_prompt + _more(job.prompt_count, language)
    when = job.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    images = words("of", done=job.images_done, total=job.images_total).say(language)
    status = _status(job.status, language)
    return [when, status, prompts, images, f"{job.width}x{job.height}", job.owner or "", job.id]


def queue_row(view: JobView, who: Identity, language: str = ENGLISH) -> list:
    """A row of the Queue panel; `who` is the person looking at it."""
    mine = who.owns(view)
    if view.owner:
        owner = words("owner_you", owner=view.owner).say(language) if mine else view.owner
    else:
        owner = words("you" if mine else "someone_else").say(language)
    status = _status(view.status, language)
    return [
        "" if view.position is None else str(view.position),
        words("on", status=status, where=view.where).say(language) if view.where else status,
        owner,
        view.first_prompt + _more(view.prompt_count, language),
        words("of", done=view.images_done, total=view.images_total).say(language),
        "" if view.eta_done_s is None else about(view.eta_done_s, language),
        words("stop_cell").say(language) if mine or who.admin else "",  # admins stop anyone's
        view.id,
    ]


def table(rows: list[list], key: str, language: str = ENGLISH) -> dict[str, Any]:
    """A table's value with its headers in `language` ("queue_columns", "history_columns")."""
    return {"headers": columns(key, language), "data": rows}


def _more(prompt_count: int, language: str) -> str:
    return words("more_prompts", n=prompt_count - 1).say(language) if prompt_count > 1 else ""


def _status(status: str, language: str) -> str:
    return words(status).say(language) if status in set(Status) else status
