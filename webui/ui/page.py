"""The page's handlers: one object made outside the layout, its bound methods wired to events.

Generating is submitting a job to the job service and following it. Following is an async
handler that sleeps between looks at the job, so a page waiting on a long queue holds none
of the server's worker threads. A page that is closed leaves its job running; a page that
is opened again (or another tab of the same person) finds the person's newest unfinished
job and follows it. Without a login, "the same person" is the same browser: an id kept in
its local storage (gr.BrowserState) stands for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr

from webui.access import Access
from webui.jobs.record import FAILED, JobRecord
from webui.jobs.service import JobService
from webui.jobs.views import Identity
from webui.product import DEFAULT_POSITION, DEFAULT_SCALE
from webui.prompts import prompts_from_file
from webui.request import FORM_FIELDS, TEXT, RequestError
from webui.settings import SEED_PER_IMAGE, Settings
from webui.ui import text
from webui.ui.looks_part import LORA_INPUTS, loras_from_form
from webui.ui.parts import error, language
from webui.ui.reuse import Reuse
from webui.ui.uploaded import stored_inputs
from webui.uploads import PAGE_COOKIE, Uploads
from webui.words import ENGLISH, words

logger = logging.getLogger(__name__)

WAIT_S = 5.0  # a following page looks at its job when the queue changes, or after this
HISTORY_LIMIT = 200
JOBS_LISTED = 50  # by /jobs
PROMPT_FILE_MAX_BYTES = 1_000_000  # below the server's upload cap, so that this message is the one seen
SESSIONS_KEPT = 10_000  # page sessions whose browser id is remembered


BROWSER_ID = re.compile(r"[0-9a-f]{32}")  # what `identify` makes; anything else is made anew


class Page(Reuse):
    """Handlers of the page, on one job service."""

    def __init__(self, service: JobService, settings: Settings, access: Access, uploads: Uploads) -> None:
        self.service, self.settings, self.access, self.uploads = service, settings, access, uploads
        self.form: dict[str, Any] = {}  # field name -> component, set by the layout
        self.results: Any = None  # the Generate tab's Results (webui/ui/results.py), set by the layout
        self._browsers: OrderedDict[str, str] = OrderedDict()  # Gradio session -> browser id
        self._following: OrderedDict[str, str] = OrderedDict()  # Gradio session -> the job its page follows

    def identity(self, request: gr.Request | None) -> Identity:
        if request is None:
            return Identity()
        session = request.session_hash
        person = request.username
        return Identity(person, self._browsers.get(session, session), self.access.is_admin(person))

    def signed_in(self, request: gr.Request) -> str:
        """The line naming who is signed in, with a link to log out."""
        name = request.username or "?"
        admin = words("admin_mark").say(language(request)) if self.access.is_admin(name) else ""
        return words("signed_in", name=name, admin=admin).say(language(request))

    def identify(self, browser_id: Any, request: gr.Request) -> str:
        """On load: this browser's id (made on its first visit) stands for the session. It goes
        back to the browser, so only an id of the shape made here is kept: anything else a page
        sends (a FileData would be served as a file) is replaced."""
        if not (isinstance(browser_id, str) and BROWSER_ID.fullmatch(browser_id)):
            browser_id = uuid.uuid4().hex
        _remember(self._browsers, request.session_hash, browser_id)
        return browser_id

    async def generate(
        self,
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
        kind: str = TEXT,
        strength: float = 0.6,
        product_scale: float = DEFAULT_SCALE,
        position: str = DEFAULT_POSITION,
        model: str = "",
        images: Any = None,
        cutout: str = "auto",
        painted: Any = None,
        reused: Any = None,
        lora_1: str | None = None,
        lora_strength_1: float = 1.0,
        lora_2: str | None = None,
        lora_strength_2: float = 1.0,
        lora_3: str | None = None,
        lora_strength_3: float = 1.0,
        lora_4: str | None = None,
        lora_strength_4: float = 1.0,
        request: gr.Request = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """Generate images for every prompt (one per line; for every input image, with images)
        and return them with their seeds."""
        values = _form_values(locals())
        # Off the event loop: acceptance reads the tokenizer, the images, and writes the job to disk.
        record = await asyncio.to_thread(self.accept, request, values)
        if request is not None:
            _remember(self._following, request.session_hash, record.id)
        lang = language(request)
        return self.results.generated(await self.follow(record.id, progress, lang), lang)

    def submit(
        self,
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
        kind: str = TEXT,
        strength: float = 0.6,
        product_scale: float = DEFAULT_SCALE,
        position: str = DEFAULT_POSITION,
        model: str = "",
        images: Any = None,
        cutout: str = "auto",
        painted: Any = None,
        reused: Any = None,
        lora_1: str | None = None,
        lora_strength_1: float = 1.0,
        lora_2: str | None = None,
        lora_strength_2: float = 1.0,
        lora_3: str | None = None,
        lora_strength_3: float = 1.0,
        lora_4: str | None = None,
        lora_strength_4: float = 1.0,
        request: gr.Request = None,
    ) -> dict[str, Any]:
        """Queue a job and return at once: its id, and its place in the queue (`/job` follows it)."""
        record = self.accept(request, _form_values(locals()))
        return text.job_status(record, self.service.view(record.id))

    def accept(self, request: gr.Request | None, values: dict[str, Any]) -> JobRecord:
        """A job for the form's values (by name), its input images stored first, queued;
        gr.Error says why not."""
        try:
            job = text.request_from_form(self.settings.max_prompts, values)
            digests, names = stored_inputs(
                values, self.settings, self.service.inputs, lambda file: self.upload(file, request)
            )
            job = dataclasses.replace(job, inputs=digests, input_names=names, loras=loras_from_form(values))
            return self.service.submit(job, self.identity(request))
        except ValueError as exc:  # RequestError and TemplateError included
            raise error(exc, request) from None

    async def follow(self, job_id: str, progress: gr.Progress, lang: str = ENGLISH) -> JobRecord:
        """Wait for the job, showing where it waits and then its progress; its record."""
        shown, seen = None, -1
        while True:
            view = self.service.view(job_id)
            if view is None:
                raise gr.Error(words("no_job", job=job_id).say(lang))
            if view.finished:
                break
            if self.service.closing:
                raise gr.Error(words("restarting_follow").say(lang))
            notice = self.service.runner.notice()
            line = view.describe(lang)
            now = (round(view.fraction, 3), f"{notice} {line}" if notice else line)
            if now != shown:
                progress(now[0], desc=now[1])
                shown = now
            seen = await self.service.changes.settled(seen, WAIT_S)  # a step, the end, a move...
        record = self.service.record(job_id)
        assert record is not None
        if record.status == FAILED:
            raise gr.Error(record.error or words("job_failed").say(lang))
        return record

    def unfinished(self, request: gr.Request) -> str | None:
        """On load: this person's newest unfinished job, which the page then follows; none when
        the page has clicked Generate already (it follows that job)."""
        if request.session_hash in self._following:
            return None
        return self.service.latest_unfinished(self.identity(request))

    async def attach(
        self,
        job_id: str | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> dict:
        """Follow a job found on load: its results and the grid's shape in one answer; nothing
        when the page has generated another job meanwhile (the grid is that job's)."""
        if job_id is None:
            return dict.fromkeys(self.results.shown, gr.skip())
        _remember(self._following, request.session_hash, job_id)
        lang = language(request)
        record = await self.follow(job_id, progress, lang)
        if self._following.get(request.session_hash) != job_id:
            return dict.fromkeys(self.results.shown, gr.skip())
        return self.results.show(record, lang)

    def stop(self, request: gr.Request) -> None:
        """Stop the job this page follows."""
        job_id = self._following.get(request.session_hash)
        if job_id is not None and self.service.stop(job_id, self.identity(request)):
            gr.Info(words("stopping").say(language(request)))

    def stop_job(self, job_id: str, request: gr.Request) -> bool:
        """Stop one of your jobs by id; False if it had ended already."""
        try:
            return self.service.stop(job_id, self.identity(request))
        except RequestError as exc:
            raise error(exc, request) from None

    def job(self, job_id: str, request: gr.Request) -> dict[str, Any]:
        """One job by id, for scripts: status, progress, position, images so far."""
        record = self.service.record(job_id)
        if record is None:
            raise error(words("no_job_id", job=text.shown(job_id)), request)
        return text.job_status(record, self.service.view(job_id), self.service.runner.notice())

    def jobs(self, request: gr.Request) -> list[dict[str, Any]]:
        """Recent jobs, newest first, the unfinished ones included: yours when a login is on,
        everyone's otherwise (as History shows them), each marked `yours` or not."""
        who = self.identity(request)
        return [
            {**text.job_status(r, self.service.view(r.id) if r.unfinished else None), "yours": who.owns(r)}
            for r in self.service.records(JOBS_LISTED, owner=who.user)
        ]

    def history(self, request: gr.Request = None, owner: str | None = None) -> list[list]:
        """The History table: jobs newest first (`owner`'s only, when given), unfinished ones
        included."""
        lang = language(request)
        owner = owner if isinstance(owner, str) else None
        return [text.history_row(job, lang) for job in self.service.history(HISTORY_LIMIT, owner=owner)]

    def history_request(self, job_id: str) -> tuple:
        """A past job's images (captioned) and its zip (the PNG itself for one image)."""
        values = text.outputs(self.record(job_id, None))
        return values["gallery"], values["download"]

    def load_prompts(self, file: str | None, request: gr.Request = None) -> str:
        """The prompt box from an uploaded file: a .txt as it is, a .csv's prompt column."""
        if not file:
            return gr.skip()
        path = self.upload(file, request)
        try:
            return prompts_from_file(path.name, path.read_bytes(), PROMPT_FILE_MAX_BYTES)
        except ValueError as exc:
            raise error(exc, request) from None

    def upload(self, file: Any, request: gr.Request | None) -> Path:
        """The file an upload input names, if this page (browser and person) uploaded it."""
        owner = (request.username, request.cookies.get(PAGE_COOKIE)) if request is not None else (None, None)
        path = self.uploads.path(file, owner)
        if path is None:
            raise error(words("not_an_upload"), request)
        return path

    def record(self, job_id: str, request: gr.Request | None) -> JobRecord:
        """A job from History by id; gr.Error when there is none."""
        record = self.service.record(job_id)
        if record is None:
            raise error(words("no_history_job", job=text.shown(job_id)), request)
        return record


# What the page's Generate sends besides the request's form fields: the input images section.
IMAGE_INPUTS = ("images", "cutout", "painted", "reused")


def _form_values(arguments: dict[str, Any]) -> dict[str, Any]:
    """A handler's arguments, by name: the request's form fields, the images and looks sections."""
    return {name: arguments[name] for name in (*(f.name for f in FORM_FIELDS), *IMAGE_INPUTS, *LORA_INPUTS)}


def _remember(sessions: OrderedDict[str, str], session: str, value: str) -> None:
    """Per-session memory, bounded: the sessions of long-closed pages are forgotten first."""
    sessions[session] = value
    sessions.move_to_end(session)
    while len(sessions) > SESSIONS_KEPT:
        sessions.popitem(last=False)
