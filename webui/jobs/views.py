"""Jobs as people see them: who is asking, where each job stands (position, ETA, progress),
and a finished job's line in History."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from webui.jobs.record import QUEUED, RUNNING, JobRecord, Status
from webui.request import steps_run
from webui.words import ENGLISH, words

if TYPE_CHECKING:  # the lane imports torch; `python -m webui.queue` needs none of it
    from webui.lane import Progress


@dataclass(frozen=True)
class JobSummary:
    """A job as History lists it (read from the job database's columns, not its JSON)."""

    id: str
    created: datetime
    status: Status
    owner: str | None
    first_prompt: str
    prompt_count: int
    images_total: int
    images_done: int
    width: int
    height: int


@dataclass(frozen=True)
class Identity:
    """Who is asking: the login name when a login is on, else the browser or script session."""

    user: str | None = None
    client: str | None = None
    admin: bool = False  # may stop anyone's job

    @property
    def key(self) -> str | None:
        """What the per-person limit counts by."""
        return self.user or self.client

    @property
    def label(self) -> str:
        return self.user or (f"session {self.client[:8]}" if self.client else "anonymous")

    def owns(self, job: JobRecord | JobView) -> bool:
        if self.user:
            return job.owner == self.user
        return self.client is not None and job.client == self.client


@dataclass(frozen=True)
class JobView:
    """A job at one moment."""

    id: str
    status: Status
    owner: str | None
    client: str | None
    first_prompt: str
    prompt_count: int
    images_total: int
    images_done: int  # saved or black
    position: int | None  # among waiting jobs, 1 = next; None once it runs
    ahead: int  # unfinished jobs accepted before it
    eta_start_s: float | None  # seconds until it runs (0 when running); None before any measurement
    eta_done_s: float | None  # seconds until it ends
    progress: Progress | None  # of its running pipeline call
    error: str | None
    where: str = ""  # the workers running it, in distributed mode

    @property
    def finished(self) -> bool:
        return self.status not in (QUEUED, RUNNING)

    @property
    def fraction(self) -> float:
        if self.progress is not None:
            return self.progress.fraction
        return self.images_done / self.images_total if self.images_total else 1.0

    def describe(self, language: str = ENGLISH) -> str:
        """The progress line: "images 5-8 of 24, step 3 of 8", or where it waits."""
        p = self.progress
        if self.status == RUNNING and p is not None:
            first, last = p.images_done + 1, p.images_done + p.chunk_images
            line = words(
                "progress",
                first=first,
                last=last,
                total=p.images_total,
                step=p.step,
                steps=p.steps,
                on=self.where,
            )
            return line.say(language)
        if self.status == RUNNING:
            return words("starting", done=self.images_done, total=self.images_total).say(language)
        ahead = words("ahead", n=self.ahead)
        if self.eta_start_s is None:
            return ahead.say(language)
        return words("ahead_eta", ahead=ahead, eta=about(self.eta_start_s, language)).say(language)


def about(seconds: float | None, language: str = ENGLISH) -> str:
    """A rough duration: "about 40 s", "about 3 min"."""
    if seconds is None:
        return words("unknown").say(language)
    if seconds < 90:
        return words("about_s", n=max(1, round(seconds))).say(language)
    return words("about_min", n=round(seconds / 60)).say(language)


def views_of(
    jobs: Sequence[tuple[JobRecord, bool, Progress | None]],
    seconds_per_unit: float | None,
    where: Callable[[str], str] = lambda job_id: "",
) -> list[JobView]:
    """Views of `jobs` (record, running, progress), in queue order; ETAs from the measured speed.

    A job's ETA counts the work left of every job before it, one pipeline at that speed.
    """
    views, work_before, waiting = [], 0.0, 0
    for ahead, (record, running, progress) in enumerate(jobs):
        r = record.request
        left = len(record.pending) * r.width * r.height * steps_run(r.kind, r.steps, r.strength)
        if progress is not None and running:  # the running call's share is partly done
            left -= progress.chunk_images * r.width * r.height * progress.step
        position = None
        if record.unfinished and not running:
            waiting += 1
            position = waiting
        status = (RUNNING if running else QUEUED) if record.unfinished else record.status
        rate = seconds_per_unit if record.unfinished else None
        views.append(
            JobView(
                id=record.id,
                status=status,
                owner=record.owner,
                client=record.client,
                first_prompt=r.prompts[0] if r.prompts else "",
                prompt_count=len(r.prompts),
                images_total=len(record.images),
                images_done=record.done_count,
                position=position,
                ahead=ahead,
                eta_start_s=None if rate is None else (0.0 if running else work_before * rate),
                eta_done_s=None if rate is None else (work_before + max(0, left)) * rate,
                progress=progress if running else None,
                error=record.error,
                where=where(record.id) if running else "",
            )
        )
        work_before += max(0, left)
    return views


def job_json(
    record: JobRecord,
    view: JobView | None,
    *,
    url_of: Callable[[int], str],
    notice: str | None = None,
) -> dict[str, Any]:
    """A job as scripts see it, one shape for the page's `/job` and the REST API: status,
    progress, place, and every image made so far. `url_of` gives image n's URL (a signed
    REST link, or the page's file route); `notice` says why an unfinished job is not moving."""
    live = view is not None and not view.finished
    progress = view.progress if live and view is not None else None
    r = record.request
    return {
        "id": record.id,
        "status": view.status if live and view is not None else record.status,
        "error": record.error,
        "created": record.created.isoformat(),
        "owner": record.owner,
        "kind": r.kind,
        "model": record.model,
        "position": view.position if live and view is not None else None,
        "eta_s": None if not live or view is None or view.eta_done_s is None else round(view.eta_done_s, 1),
        "notice": notice if live else None,
        "workers": view.where if live and view is not None else "",
        "resumed": record.resumed,
        "folder": str(record.folder),  # where the server saved them, for scripts on its machine
        "progress": {
            "images_done": record.done_count,
            "images_total": len(record.images),
            "step": progress.step if progress else None,
            "steps": progress.steps if progress else steps_run(r.kind, r.steps, r.strength),
            "fraction": round(view.fraction, 4) if live and view is not None else 1.0,
        },
        "images": [
            {
                "index": i.index,
                "prompt": record.prompt_of(i),
                "input": None
                if i.input_index is None
                else r.input_names[i.input_index]
                if r.input_names
                else None,
                "seed": i.seed,
                "width": r.width,
                "height": r.height,
                "starred": i.starred,
                "file": str(record.path_of(i)),
                "url": url_of(i.index),
            }
            for i in record.saved
        ],
    }
