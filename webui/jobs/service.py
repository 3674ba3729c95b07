"""The job service: the one queue of the product, in front of whatever makes the images.

The page, `gradio_client` scripts and start-up recovery all go through it. A job is accepted
(validated, within the limits, planned, written to the database and its manifest) before any
work; it then waits in acceptance order until the runner has room, runs, and ends done,
stopped or failed. When the server shuts down, its running jobs go back to waiting, and the
next start takes them up again (webui/jobs/recovery.py).

Handing jobs to the runner and recording their ends is webui/jobs/dispatch.py's part; pause
and the order of the queue, webui/jobs/control.py's. Both are mixed into JobService.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from webui.inputs import input_store
from webui.jobs.changes import Changes
from webui.jobs.control import QueueControl, QueueControls
from webui.jobs.dispatch import Dispatch, Live
from webui.jobs.execute import write_starred
from webui.jobs.record import SAVED, STOPPED, JobRecord
from webui.jobs.runners import Runner
from webui.jobs.store import JobStore, persist
from webui.jobs.views import Identity, JobSummary, JobView, views_of
from webui.loras import LoraLibrary, with_lora_hashes
from webui.models import with_model
from webui.outputs import write_manifest
from webui.request import GenerationRequest, RequestError, cannot_save
from webui.settings import Settings, env_name

logger = logging.getLogger(__name__)


class JobService(Dispatch, QueueControls):
    """Accepts, orders, runs and stops jobs; the views of them that people see."""

    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        settings: Settings,
        validate: Callable[[GenerationRequest], object],
        model_label: str,
        is_demo: bool,
        loras: LoraLibrary | None = None,
    ) -> None:
        self.store, self.runner, self.settings = store, runner, settings
        self.inputs = input_store(settings.state_path)  # jobs' input images, by content hash
        self.loras = loras or LoraLibrary(settings.lora_path)  # with the model's layers: checked to fit
        self._validate, self._model, self._demo = validate, model_label, is_demo
        self._lock = threading.Condition()
        self._live: dict[str, Live] = {}  # acceptance order
        self._accepting: list[Identity] = []  # jobs being written to disk: counted against limits
        self._closing = False
        self.control = QueueControl(settings.state_path)  # paused or not: survives restarts
        self.changes = Changes()  # bumped on every change people see: pages wait on it
        self._paused = False  # as last applied to the runner

    def start(self, recovered: Iterable[JobRecord] = ()) -> None:
        """Take up the jobs of an earlier run, ahead of any new one, in their order (unless the
        queue was left paused); then follow the pause state."""
        self._apply_pause()
        with self._lock:
            for record in recovered:
                self._live[record.id] = Live(record)
            self._pump()
        threading.Thread(target=self._follow_pause, name="queue-control", daemon=True).start()

    @property
    def closing(self) -> bool:
        return self._closing

    def submit(self, request: GenerationRequest, who: Identity) -> JobRecord:
        """Accept a job (RequestError names the limit it breaks) and queue it.

        The job holds its place against the limits while its plan is written to disk, which
        happens outside the lock: running jobs never wait on that write.
        """
        self._validate(request)
        request = with_model(request, self.runner.models())
        request = with_lora_hashes(request, self.loras)
        for digest in request.inputs:  # stored by the caller before this: a restart finds them
            if not self.inputs.has(digest):
                raise RequestError("no_input", digest=digest[:16])
        with self._lock:
            if self._closing:
                raise RequestError("restarting_submit")
            self._check_limits(who)
            self._accepting.append(who)
        try:
            record = JobRecord.plan(
                request,
                output_root=self.settings.output_dir,
                model=request.model,
                demo=self._demo,
                owner=who.user,
                client=who.client,
            )
            try:
                write_manifest(record.manifest_path, record.to_record())
            except OSError as exc:
                logger.error("job %s: could not write its manifest: %s", record.id, exc)
                raise cannot_save(exc, self.settings.output_dir) from None
            self.store.add(record)
        except BaseException:
            with self._lock:
                self._accepting.remove(who)
            raise
        with self._lock:  # one step from accepting to live: no moment where the job counts for neither
            self._accepting.remove(who)
            self._live[record.id] = Live(record)
            logger.info("job %s accepted from %s: %d images", record.id, who.label, len(record.images))
            self._pump()
            self.changes.bump()
            return record

    def _check_limits(self, who: Identity) -> None:
        # Jobs that will wait: those not yet running, and those being accepted beyond what the
        # runner has room for now (submissions at the same moment as a free runner do not wait).
        running = sum(live.dispatched for live in self._live.values())
        free = max(0, self.runner.capacity - running)
        waiting = max(0, len(self._live) - running + len(self._accepting) - free)
        size = self.settings.queue_size
        if waiting >= size:
            raise RequestError("queue_full", waiting=waiting, setting=env_name("queue_size"), size=size)
        cap = self.settings.max_jobs_per_user
        mine = sum(who.owns(live.record) for live in self._live.values())
        mine += sum(other.key == who.key for other in self._accepting)
        if who.key is not None and mine >= cap:
            raise RequestError("per_person_cap", mine=mine, setting=env_name("max_jobs_per_user"), cap=cap)

    def stop(self, job_id: str, who: Identity) -> bool:
        """Stop a job of `who`'s; False if it had ended already. RequestError if not theirs."""
        with self._lock:
            live = self._live.get(job_id) if isinstance(job_id, str) else None
            if live is None:
                return False
            if not (who.admin or who.owns(live.record)):
                raise RequestError("not_yours", job=job_id)
            live.stop_asked = True
            live.cancel.set()
            if not live.dispatched:  # never ran: it ends here
                self._finish(live.record, STOPPED, None)
                self._ended(job_id)
            logger.info("job %s: stop asked by %s", job_id, who.label)
            self.changes.bump()
            return True

    def star(self, job_id: str, index: int, starred: bool) -> JobRecord:
        """Star (or unstar) one saved image of a job, running or ended: kept with the job."""
        with self._lock:
            live = self._live.get(job_id)
            record = live.record if live is not None else self.store.get(job_id)
            if record is None or not 0 <= index < len(record.images):
                raise RequestError("no_image", index=index, job=job_id)
            if record.images[index].state != SAVED:
                raise RequestError("not_saved", index=index, job=job_id)
            record.images[index].starred = starred
            persist(self.store, record)
            return record

    def views(self) -> list[JobView]:
        """Every unfinished job, in queue order, with position and ETA."""
        with self._lock:
            lives = list(self._live.values())
        runner = self.runner
        return views_of(
            [(j.record, j.dispatched, j.progress) for j in lives], runner.seconds_per_unit(), runner.placement
        )

    def view(self, job_id: str) -> JobView | None:
        """One job as it stands now: from the queue, or from the database once it has ended."""
        if not isinstance(job_id, str):
            return None
        found = next((v for v in self.views() if v.id == job_id), None)
        if found is not None:
            return found
        record = self.store.get(job_id)
        return None if record is None else views_of([(record, False, None)], None)[0]

    def record(self, job_id: str) -> JobRecord | None:
        """A job by id, unfinished or not; None for no such job (or an id that is not text)."""
        if not isinstance(job_id, str):
            return None
        with self._lock:
            live = self._live.get(job_id)
        return live.record if live is not None else self.store.get(job_id)

    def history(self, limit: int, owner: str | None = None) -> list[JobSummary]:
        """History's lines: the newest `limit` jobs (`owner`'s only, when given), newest first."""
        return self.store.listing(limit, owner=owner)

    def starred_zip(self, record: JobRecord, write: bool = False) -> Path | None:
        """The zip of the job's starred images (None when none is starred), written anew when
        `write` or when it is missing."""
        if record.starred and (write or not record.starred_zip_path.is_file()):
            return write_starred(record)
        return record.starred_zip_path if record.starred else None

    def records(self, limit: int, owner: str | None = None) -> list[JobRecord]:
        """The newest `limit` jobs (`owner`'s only, when given), as their current records."""
        found = (self.record(job.id) for job in self.store.listing(limit, owner=owner))
        return [record for record in found if record is not None]

    def counts(self) -> tuple[int, int]:
        """Jobs waiting, and jobs running."""
        with self._lock:
            running = sum(live.dispatched for live in self._live.values())
            return len(self._live) - running, running

    def latest_unfinished(self, who: Identity) -> str | None:
        """The id of `who`'s newest unfinished job, if any."""
        with self._lock:
            mine = [job_id for job_id, live in self._live.items() if who.owns(live.record)]
        return mine[-1] if mine else None

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job has ended (or the service closes); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while job_id in self._live and not self._closing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def close(self) -> None:
        """Shutting down: nothing new starts, running jobs stop at their next step and wait
        for the next start."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self.changes.bump()  # followers say the server is restarting
        self.runner.close()

    def join(self, timeout: float) -> None:
        """Wait (up to `timeout` s) for running jobs to put down their work after close()."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [live.thread for live in self._live.values() if live.thread is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
