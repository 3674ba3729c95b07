"""Running a job on the engine: the images it still lacks, saved under their planned names.

The same code serves the job service (the page and scripts, webui/jobs/service.py) and
batch mode. The engine makes pictures; this module turns each into the PNG the record
planned, marks the record's image, and at the end writes the job's zip and contact sheet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from PIL import Image, ImageOps

from webui.engine import Engine, ImageTask, Progress, Start
from webui.inputs import InputStore
from webui.jobs.record import BLACK, DONE, RUNNING, SAVED, STOPPED, JobRecord, PlannedImage, now_utc
from webui.loras import with_lora_hashes
from webui.models import with_model
from webui.outputs import save_png, write_manifest, write_zip
from webui.product import Placed, composite, place
from webui.request import PRODUCT, GenerationRequest, RequestError
from webui.sheet import SHEET_CELL, SheetCell, write_contact_sheet

logger = logging.getLogger(__name__)


def run_job(
    engine: Engine,
    record: JobRecord,
    *,
    cancel: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[], None] | None = None,
    on_change: Callable[[PlannedImage, Image.Image | None], None] | None = None,
    unique_names: bool = False,
    inputs: InputStore | None = None,
) -> bool:
    """Make the record's planned images that are not made yet; True if a stop left some unmade.

    Progress counts the job's images made before this run. `on_change` follows each image
    that got an outcome, on a saver thread, with its thumbnail for the contact sheet (None for
    a black image). `unique_names` keeps existing
    files (batch mode's shared folder); otherwise a file already at a planned name is that
    image, made before a restart. RequestError says why the run failed.
    """
    request, todo = record.request, record.pending
    done_before, total = record.done_count, len(record.images)
    starts = prepare_inputs(request, inputs) if todo else {}
    tasks = [
        ImageTask(i.index, request.text_of(record.prompt_of(i)), i.seed, _start(starts, i)) for i in todo
    ]
    r, seeds = request, f"{record.images[0].seed}..{record.images[-1].seed}"
    shape = f"{r.width}x{r.height}, {r.steps} steps, guidance {r.guidance_scale:g}"
    logger.info(
        "request %s: %d prompts x %d, %d of %d images to make, %s, seeds %s, %s",
        record.id,
        len(r.prompts),
        r.images_per_prompt,
        len(todo),
        total,
        shape,
        seeds,
        record.model,
    )

    def save(task: ImageTask, picture: Image.Image) -> Path:
        image = record.images[task.index]
        placed = None if image.input_index is None else starts[image.input_index][1]
        if placed is not None:  # the product's own pixels, back over the decoded ones
            picture = composite(picture, placed)
        stem = image.file.removesuffix(".png")
        path = save_png(picture, record.folder, stem, record.png_parameters(image), unique=unique_names)
        image.file, image.state = path.name, SAVED
        if on_change is not None:  # a thumbnail for the contact sheet, which one image does not get
            sheet = len(record.images) > 1
            on_change(image, ImageOps.contain(picture, (SHEET_CELL, SHEET_CELL)) if sheet else None)
        return path

    def progress(p: Progress) -> None:
        if on_progress is not None:
            on_progress(Progress(p.step, p.steps, done_before + p.images_done, p.chunk_images, total))

    outcome = engine.run(
        request, tasks, on_image=save, label=record.id, on_progress=progress, on_start=on_start, cancel=cancel
    )
    for index in outcome.black:
        record.images[index].state = BLACK
        if on_change is not None:
            on_change(record.images[index], None)
    return outcome.stopped


def prepare_inputs(r: GenerationRequest, inputs: InputStore | None) -> dict[int, tuple[Start, Placed | None]]:
    """Per input image of a request: what its calls start from, and for product shots the
    placement its outputs are composited with. RequestError when an input is not stored."""
    if not r.inputs:
        return {}
    if inputs is None:
        raise RequestError("no_input", digest=r.inputs[0][:16])
    prepared: dict[int, tuple[Start, Placed | None]] = {}
    for n, digest in enumerate(r.inputs):
        image = inputs.open(digest)
        if r.kind == PRODUCT:
            placed = place(image, r.width, r.height, r.product_scale, r.position)
            prepared[n] = (Start(placed.canvas, placed.generate), placed)
        else:
            fitted = ImageOps.fit(image.convert("RGB"), (r.width, r.height), Image.Resampling.LANCZOS)
            prepared[n] = (Start(fitted), None)
    return prepared


def _start(starts: Mapping[int, tuple[Start, Placed | None]], image: PlannedImage) -> Start | None:
    return None if image.input_index is None else starts[image.input_index][0]


def write_starred(record: JobRecord) -> Path | None:
    """The zip of the job's starred images (None when none is starred), written anew."""
    starred = record.starred
    if not starred:
        return None
    return write_zip([record.path_of(i) for i in starred], record.starred_zip_path)


def write_bundles(record: JobRecord, thumbnails: Mapping[int, Image.Image] | None = None) -> None:
    """The job's zip of images and its contact sheet, when it has two images or more.

    `thumbnails` (by image index) spare reading the PNGs back; the others are read."""
    saved, thumbnails = record.saved, thumbnails or {}
    if len(saved) < 2:
        return
    write_zip([record.path_of(i) for i in saved], record.zip_path)
    # A row per prompt; with input images, a row per input (its scenes and variants).
    r = record.request
    rows: dict[int, tuple[str, list[SheetCell]]] = {}
    for image in record.images:
        source = record.input_of(image)
        row = image.prompt_index if source is None else image.input_index
        title = r.text_of(record.prompt_of(image)) if source is None else source[1]
        made = image.state == SAVED
        picture = None
        if made:
            picture = thumbnails[image.index] if image.index in thumbnails else record.path_of(image)
        text = f"seed {image.seed}" + ("" if made else ": not made")
        text = text if source is None else f"{record.prompt_of(image)} · {text}"
        rows.setdefault(row, (title, []))[1].append(SheetCell(picture, text))
    write_contact_sheet(list(rows.values()), record.sheet_path)


def generate(
    engine: Engine,
    request: GenerationRequest,
    *,
    output_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    owner: str | None = None,
    inputs: InputStore | None = None,
) -> JobRecord:
    """Validate, plan and run one job at once, outside any queue, and write its manifest.

    For batch mode, the benchmark and tests. `output_dir` is a shared folder (the job gets
    `manifest-<id>.json` there and names that never overwrite); by default the job gets a
    folder of its own under the output setting.
    """
    engine.validate(request)
    request = with_lora_hashes(with_model(request, [engine.model.label]), engine.loras)
    model = engine.model
    record = JobRecord.plan(
        request,
        output_root=engine.settings.output_dir,
        model=model.label,
        demo=model.is_demo,
        owner=owner,
        folder=output_dir,
    )
    record.status, record.started = RUNNING, now_utc()
    started = time.monotonic()
    stopped = run_job(
        engine,
        record,
        cancel=cancel,
        on_progress=on_progress,
        unique_names=output_dir is not None,
        inputs=inputs,
    )
    record.elapsed_s = time.monotonic() - started
    record.status, record.finished = (STOPPED if stopped else DONE), now_utc()
    logger.info(
        "request %s: %s, %d of %d images in %.2f s (%s)",
        record.id,
        record.status,
        len(record.saved),
        len(record.images),
        record.elapsed_s,
        model.label,
    )
    try:
        write_manifest(record.manifest_path, record.to_record())
    except OSError as exc:  # the images are saved; the job is not lost for want of it
        logger.error("request %s: could not write its manifest in %s: %s", record.id, record.folder, exc)
    return record
