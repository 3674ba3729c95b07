"""The job record: one request, planned to the last image before any work, and its fate.

A job is planned when it is accepted: its id, folder, base seed, and for every image its
prompt, seed and file name. It then only changes state: the job goes queued -> running ->
done, stopped or failed, and each image planned -> saved (or black, an all-NaN image that is
never saved). `to_record()` is the manifest written next to the images and the row kept in
the database; `from_record()` reads either back, manifests of the first version included.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from webui.outputs import MANIFEST_NAME, image_stem, request_dir
from webui.request import PRODUCT, VARIATION, GenerationRequest
from webui.settings import RANDOM_SEED_RANGE

RECORD_VERSION = 2


class Status(StrEnum):
    """A job's one status: as the database, the manifest, the pages, scripts and the APIs say it."""

    QUEUED = "queued"  # accepted, waiting its turn
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"  # Stop (or a shutdown that did not resume it) left images unmade
    FAILED = "failed"


QUEUED, RUNNING, DONE, STOPPED, FAILED = Status
UNFINISHED = (QUEUED, RUNNING)
PLANNED, SAVED, BLACK = "planned", "saved", "black"
# A job's bundles, in its folder beside the images.
ZIP_NAME, STARRED_ZIP_NAME, SHEET_NAME = "images.zip", "starred.zip", "contact-sheet.png"


@dataclass
class PlannedImage:
    """One image of a job: where it sits in the request, its seed and its file name."""

    index: int  # input-then-prompt-then-variant order, from 0
    prompt_index: int
    variant: int
    seed: int
    file: str  # in the job's folder
    state: str = PLANNED
    starred: bool = False  # a team member's pick: kept with the job, zipped by "Download starred"
    input_index: int | None = None  # which of the request's input images, when it has any


@dataclass(eq=False)
class JobRecord:
    """Everything about one job. Mutated only by its owner (the job service, or batch mode)."""

    id: str
    request: GenerationRequest  # its seed is the base seed used, never -1
    created: datetime  # UTC
    folder: Path
    model: str
    demo: bool
    images: list[PlannedImage]
    owner: str | None = None  # the login name, when a login is on
    client: str | None = None  # the browser or script session that submitted it
    status: Status = QUEUED
    error: str | None = None  # why it failed
    started: datetime | None = None  # first pipeline call
    finished: datetime | None = None
    elapsed_s: float = 0.0  # running time, summed over resumes
    resumed: int = 0  # times it was taken up again after the server stopped
    crash_resumes: int = 0  # of those, after the process died while the job ran
    manifest_name: str = MANIFEST_NAME
    version: int = field(default=RECORD_VERSION)

    @classmethod
    def plan(
        cls,
        request: GenerationRequest,
        *,
        output_root: Path,
        model: str,
        demo: bool,
        owner: str | None = None,
        client: str | None = None,
        folder: Path | None = None,
    ) -> JobRecord:
        """A new job for `request`: id, folder, base seed and every image's seed and name.

        `folder` defaults to a new one per job under `output_root`; a shared folder (batch
        mode's --out) gets the manifest as `manifest-<id>.json`.
        """
        job_id = uuid.uuid4().hex[:12]
        now = now_utc()
        base = request.seed if request.seed != -1 else secrets.randbelow(RANDOM_SEED_RANGE)
        request = GenerationRequest.from_record({**request.to_record(), "seed": base})
        images = [_planned(request, k) for k in range(request.image_count)]
        return cls(
            id=job_id,
            request=request,
            created=now,
            folder=(folder or request_dir(output_root, job_id, now.astimezone())).resolve(),
            model=model,
            demo=demo,
            images=images,
            owner=owner,
            client=client,
            manifest_name=MANIFEST_NAME if folder is None else f"manifest-{job_id}.json",
        )

    @property
    def manifest_path(self) -> Path:
        return self.folder / self.manifest_name

    @property
    def zip_path(self) -> Path:
        return self.folder / ZIP_NAME

    @property
    def starred_zip_path(self) -> Path:
        return self.folder / STARRED_ZIP_NAME

    @property
    def sheet_path(self) -> Path:
        return self.folder / SHEET_NAME

    @property
    def saved(self) -> list[PlannedImage]:
        return [image for image in self.images if image.state == SAVED]

    @property
    def pending(self) -> list[PlannedImage]:
        return [image for image in self.images if image.state == PLANNED]

    @property
    def starred(self) -> list[PlannedImage]:
        return [image for image in self.saved if image.starred]

    @property
    def black_seeds(self) -> list[int]:
        return [image.seed for image in self.images if image.state == BLACK]

    @property
    def done_count(self) -> int:
        """Images with an outcome: saved, or black."""
        return sum(image.state != PLANNED for image in self.images)

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED

    def prompt_of(self, image: PlannedImage) -> str:
        """The image's prompt as typed (the style is kept apart)."""
        return self.request.prompts[image.prompt_index]

    def input_of(self, image: PlannedImage) -> tuple[str, str] | None:
        """The image's input as (content hash, name), if the job has inputs."""
        if image.input_index is None:
            return None
        return self.request.inputs[image.input_index], self.request.names[image.input_index]

    def label_of(self, image: PlannedImage) -> str:
        """The image's caption text: its input's name (with inputs), then its prompt."""
        source = self.input_of(image)
        prompt = self.prompt_of(image)
        return f"{source[1]}: {prompt}" if source else prompt

    def path_of(self, image: PlannedImage) -> Path:
        return self.folder / image.file

    def png_parameters(self, image: PlannedImage) -> dict[str, Any]:
        """What the PNG of `image` carries: enough to make it again."""
        r = self.request
        parameters: dict[str, Any] = {
            "prompt": self.prompt_of(image),
            "seed": image.seed,
            "width": r.width,
            "height": r.height,
            "steps": r.steps,
            "guidance_scale": r.guidance_scale,
            "model": self.model,
            "request_id": self.id,
            "index": image.index,
        }
        if r.style.strip():
            parameters["style"] = r.style
        parameters["seed_policy"] = r.seed_policy
        if r.guidance_scale > 0 and r.negative_prompt:
            parameters["negative_prompt"] = r.negative_prompt
        if r.loras:  # each LoRA's name, strength and file hash
            parameters["loras"] = [list(entry) for entry in r.loras]
        source = self.input_of(image)
        if source is not None:  # what the image was made from, by content hash
            parameters |= {"kind": r.kind, "inputs": [source[0]], "input_name": source[1]}
            parameters |= {"strength": r.strength} if r.kind == VARIATION else {}
            if r.kind == PRODUCT:
                parameters |= {"product_scale": r.product_scale, "position": r.position}
        return parameters

    def to_record(self) -> dict[str, Any]:
        """The whole job as JSON-ready values: the manifest, and the database's copy."""
        made = len(self.saved)
        return {
            "version": self.version,
            "request_id": self.id,
            "created": _iso(self.created),
            "status": self.status,
            "error": self.error,
            "user": self.owner,
            "client": self.client,
            "model": self.model,
            "demo": self.demo,
            **self.request.to_record(),
            "images": [{**image.__dict__, "prompt": self.prompt_of(image)} for image in self.images],
            "black_seeds": self.black_seeds,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "elapsed_s": self.elapsed_s,
            "images_per_s": round(made / self.elapsed_s, 3) if self.elapsed_s else None,
            "resumed": self.resumed,
            "crash_resumes": self.crash_resumes,
            "manifest_name": self.manifest_name,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], folder: Path) -> JobRecord:
        """The job `record` describes, its files in `folder`; KeyError or ValueError if it is
        not one of ours."""
        request = GenerationRequest.from_record(record)
        if record.get("version", 1) == 1:
            images = _images_of_version_1(record, request)
        else:
            images = [PlannedImage(**{k: v for k, v in i.items() if k != "prompt"}) for i in record["images"]]
        return cls(
            id=record["request_id"],
            request=request,
            created=datetime.fromisoformat(record["created"]),
            folder=folder,
            model=record.get("model", "?"),
            demo=bool(record.get("demo", False)),
            images=images,
            owner=record.get("user"),
            client=record.get("client"),
            status=Status(record.get("status", DONE)),
            error=record.get("error"),
            started=_parse(record.get("started")),
            finished=_parse(record.get("finished")),
            elapsed_s=float(record.get("elapsed_s") or 0.0),
            resumed=int(record.get("resumed", 0)),
            crash_resumes=int(record.get("crash_resumes", 0)),
            manifest_name=record.get("manifest_name", MANIFEST_NAME),
        )


def _images_of_version_1(record: dict[str, Any], request: GenerationRequest) -> list[PlannedImage]:
    """The first manifests listed only the images made; the plan follows from the request."""
    per = request.images_per_prompt
    made = {i["prompt_index"] * per + i["variant"]: i for i in record["images"]}
    black = set(record.get("black_seeds", []))
    images = [_planned(request, k) for k in range(request.image_count)]
    for image in images:
        entry = made.get(image.index)
        if entry:
            image.file, image.state = entry["file"], SAVED
        elif image.seed in black:
            image.state = BLACK
    return images


def _planned(request: GenerationRequest, k: int) -> PlannedImage:
    """Image k of `request` (whose seed is the base seed): its place, seed and file name (the
    input's name first, when there are inputs)."""
    source, prompt, variant = request.place_of(k)
    seed = request.seed + request.seed_offset(k)
    text = request.prompts[prompt]
    if request.inputs:
        text = f"{request.input_names[source] if request.input_names else source + 1} {text}"
    file = f"{image_stem(k + 1, text, seed)}.png"
    return PlannedImage(k, prompt, variant, seed, file, input_index=source if request.inputs else None)


def now_utc() -> datetime:
    """The time to the millisecond: what the record keeps, so that it reads back equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def _parse(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)
