"""Jobs as people see them: who is asking, where each job stands (position, ETA, progress),
and a finished job's line in History."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from webui.jobs.record import JobRecord
from webui.lane import Progress
from webui.words import ENGLISH, words

WAITING, RUNNING_NOW = "waiting", "running"


@dataclass(frozen=True)
class JobSummary:
    """A job as History lists it (read from the job database's columns, not its JSON)."""

    id: str
    created: datetime
    status: str
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
    status: str  # waiting, running, or how it ended: done, stopped, failed
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
        return self.status not in (WAITING, RUNNING_NOW)

    @property
    def fraction(self) -> float:
        if self.progress is not None:
            return self.progress.fraction
        return self.images_done / self.images_total if self.images_total else 1.0

    def describe(self, language: str = ENGLISH) -> str:
        """The progress line: "images 5-8 of 24, step 3 of 8", or where it waits."""
        p = self.progress
        if self.status == RUNNING_NOW and p is not None:
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
        if self.status == RUNNING_NOW:
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
        left = len(record.pending) * r.width * r.height * r.steps
        if progress is not None and running:  # the running call's share is partly done
            left -= progress.chunk_images * r.width * r.height * progress.step
        position = None
        if record.unfinished and not running:
            waiting += 1
            position = waiting
        status = (RUNNING_NOW if running else WAITING) if record.unfinished else record.status
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
