"""The web host's side of distributed mode: jobs of the job service run as Celery tasks.

`CeleryRunner` implements the job service's Runner protocol (webui/jobs/runners.py). A job's
missing images go out as tasks of at most ZIMAGE_MAX_BATCH_SIZE images, small enough that
the workers online share them; the job's outstanding tasks are kept in Redis, so that after a
web restart the job follows the tasks already out instead of sending them again. The worker
events come back through the job's Redis list: the PNGs are written here, under their planned
names, as in embedded mode.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from webui.distributed import broker
from webui.distributed.monitor import BROKER_ERRORS, Monitor
from webui.inputs import input_store
from webui.jobs.record import BLACK, PLANNED, SAVED, JobRecord, PlannedImage
from webui.lane import Progress
from webui.loras import LoraLibrary
from webui.outputs import write_png
from webui.request import RequestError
from webui.settings import Settings, hide_password

logger = logging.getLogger(__name__)

POLL_S = 0.05  # how often a job looks for new events when there were none
EVENTS_AT_ONCE = 64
STOP_GRACE_S = 30.0  # after Stop, how long running tasks get to report where they stopped


@dataclass
class _Following:
    """One job's tasks in flight, as this run of the web host follows them."""

    record: JobRecord
    outstanding: dict[str, list[int]]  # task id -> image indexes
    started: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)
    announced: bool = False  # on_start called
    heard: float = field(default_factory=time.monotonic)  # when its last event came


class JobFailed(Exception):
    pass


class CeleryRunner:
    """Jobs run on the GPU workers that serve `model`, through the broker."""

    def __init__(self, settings: Settings, label: str, dtype: str) -> None:
        """`label`: the default model's; jobs naming another go to the queue of its workers."""
        self.settings, self.label, self.dtype = settings, label, dtype
        self.model = broker.model_key(label, dtype)
        self.broker = hide_password(settings.broker_url)
        self.app = broker.celery_app(settings.broker_url, settings.task_timeout)
        self.redis = broker.redis_client(settings.broker_url)
        self._closing = threading.Event()
        self._following: dict[str, _Following] = {}
        self.monitor = Monitor(self.redis, self.model, self.broker)
        self.inputs = input_store(settings.state_path)
        self.loras = LoraLibrary(settings.lora_path)  # files the workers may lack, sent by hash

    # The Runner protocol.

    @property
    def capacity(self) -> int:
        """Jobs out at once: enough to keep every worker's pool of task slots in use."""
        slots = 2 * self.settings.max_batch_size
        return slots * max(1, sum(len(self.monitor.serving(self._key(m))) for m in self.models()))

    def run(
        self,
        record: JobRecord,
        *,
        cancel: threading.Event,
        on_progress: Callable[[Progress], None],
        on_start: Callable[[], None],
        on_change: Callable[[PlannedImage, Image.Image | None], None],
    ) -> bool:
        job: _Following | None = None
        stopping: float | None = None
        try:
            while not self._closing.is_set():
                try:
                    if job is None:
                        job = self._send(record)
                        self._following[record.id] = job
                    if cancel.is_set() and stopping is None:
                        self._stop(job)
                        stopping = time.monotonic()
                    handled = self._handle_events(job, on_progress, on_start, on_change)
                    if handled:
                        job.heard = time.monotonic()
                    elif stopping is None and self._lost(job):
                        job = self._resend(job)
                        self._following[record.id] = job
                except BROKER_ERRORS as exc:
                    self.monitor.broker_down(exc)
                    time.sleep(1.0)
                    continue
                if not job.outstanding or (stopping is not None and self._stopped(job, stopping)):
                    self._forget(record.id)
                    break
                if not handled:
                    time.sleep(POLL_S)
        except JobFailed as exc:
            assert job is not None
            with contextlib.suppress(*BROKER_ERRORS):  # the job fails with its reason either way
                self._stop(job)
                self._forget(record.id)
            raise RequestError("plain", text=str(exc)) from None
        finally:
            self._following.pop(record.id, None)
        return bool(record.pending)

    def seconds_per_unit(self) -> float | None:
        return self.monitor.seconds_per_unit()

    def close(self) -> None:
        """The web host is going down: stop following; the workers carry on with the tasks out,
        and the next start picks up their results."""
        self._closing.set()

    def placement(self, job_id: str) -> str:
        job = self._following.get(job_id)
        return ", ".join(sorted(job.workers)) if job is not None else ""

    def notice(self) -> str | None:
        return self.monitor.notice()

    def health(self) -> dict[str, Any]:
        return self.monitor.health()

    # Inside.

    def _send(self, record: JobRecord) -> _Following:
        """The job's missing images as tasks, except those already out (before a restart)."""
        key = broker.tasks_key(record.id)
        out = {task.decode(): json.loads(raw) for task, raw in self.redis.hgetall(key).items()}
        covered = {index for indexes in out.values() for index in indexes}
        todo = [image for image in record.pending if image.index not in covered]
        if out:
            logger.info("job %s: following %d tasks already out", record.id, len(out))
        for digest in record.request.inputs if todo else ():  # each once, for every worker to fetch
            self.redis.set(
                broker.input_key(digest), self.inputs.read(digest), nx=True, ex=broker.EVENTS_KEPT_S
            )
        if todo:
            self._offer_loras(record)
        # A share per worker online, at most one call's worth: Redis hands waiting tasks to idle
        # workers in turn, so a job of 16 images on 4 workers runs 4 images on each.
        model = self._key(record.request.model)
        workers = max(1, len(self.monitor.serving(model)))
        size = max(1, min(self.settings.max_batch_size, math.ceil(len(todo) / workers)))
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            task_id = f"{record.id}-{uuid.uuid4().hex[:8]}"
            self.app.send_task(
                broker.TASK_NAME,
                args=[self._payload(record, task_id, chunk)],
                queue=broker.queue_for(model),
                task_id=task_id,
            )
            self.redis.hset(key, task_id, json.dumps([i.index for i in chunk]))
            out[task_id] = [i.index for i in chunk]
            logger.info("job %s task %s: %d images for %s", record.id, task_id, len(chunk), model)
        return _Following(record, out)

    def _offer_loras(self, record: JobRecord) -> None:
        """The job's LoRA files in Redis by hash, for the workers online that lack them (each
        says which it has); RequestError when this host's file changed since acceptance."""
        having = [set(w.loras) for w in self.monitor.serving(self._key(record.request.model))]
        for name, _, digest in record.request.loras:
            key = broker.lora_key(digest)
            if (having and all(digest in h for h in having)) or self.redis.exists(key):
                continue
            data = self.loras.path_of(name, digest).read_bytes()
            self.redis.set(key, data, nx=True, ex=broker.EVENTS_KEPT_S)
            megabytes = len(data) / 1e6
            logger.info("job %s: LoRA %s (%.1f MB) put in Redis for the workers", record.id, name, megabytes)

    def pause(self, paused: bool) -> None:
        """Nothing here: the job service sends no new job while paused; tasks already handed to
        the broker run (at most a call's worth per worker slot)."""

    def reorder(self, job_ids: list[str]) -> None:
        """Nothing here: tasks already handed to the broker run in the order sent."""

    def models(self) -> list[str]:
        """This host's model, then the others that workers online serve (in this precision)."""
        suffix = broker.model_key("", self.dtype)
        others = [k.removesuffix(suffix) for k in self.monitor.models() if k.endswith(suffix)]
        return [self.label, *(label for label in others if label != self.label)]

    def _key(self, label: str) -> str:
        """The model key (and so the queue) of a job naming model `label` ("": this host's)."""
        return broker.model_key(label or self.label, self.dtype)

    def _lost(self, job: _Following) -> bool:
        """No word of the job's tasks for twice the task timeout, and none of them waits in the
        queue: Redis lost them (restarted without its append-only file, say)."""
        quiet = time.monotonic() - job.heard > 2 * self.settings.task_timeout
        return quiet and self.redis.llen(broker.queue_for(self._key(job.record.request.model))) == 0

    def _resend(self, job: _Following) -> _Following:
        """The job's missing images as new tasks; should an old one turn up, its images are
        kept only where none has arrived yet."""
        record = job.record
        logger.warning(
            "job %s: no word of its %d tasks for %d s and none waits in %s: sending its missing images again",
            record.id,
            len(job.outstanding),
            2 * self.settings.task_timeout,
            broker.queue_for(self._key(record.request.model)),
        )
        self.redis.delete(broker.tasks_key(record.id))
        fresh = self._send(record)
        fresh.workers, fresh.announced = job.workers, job.announced
        return fresh

    def _payload(self, record: JobRecord, task_id: str, images: list[PlannedImage]) -> dict[str, Any]:
        request = record.request
        return {
            "v": broker.MESSAGE_VERSION,
            "job": record.id,
            "task": task_id,
            "model": self._key(request.model),
            "request": request.to_record(),
            "sheet": len(record.images) > 1,  # send contact-sheet thumbnails
            "images": [
                {
                    "index": i.index,
                    "prompt": request.text_of(record.prompt_of(i)),
                    "seed": i.seed,
                    "input": i.input_index,
                    "parameters": record.png_parameters(i),
                }
                for i in images
            ],
        }

    def _handle_events(
        self,
        job: _Following,
        on_progress: Callable[[Progress], None],
        on_start: Callable[[], None],
        on_change: Callable[[PlannedImage, Image.Image | None], None],
    ) -> int:
        """Act on the job's waiting events, then drop them from the list; how many there were."""
        record, key = job.record, broker.events_key(job.record.id)
        raws = self.redis.lrange(key, 0, EVENTS_AT_ONCE - 1)
        self.monitor.broker_up()
        failed = None
        for n, raw in enumerate(raws, 1):
            event, data = broker.unpack_event(raw)
            kind, task = event["kind"], event["task"]
            if kind == "started":
                job.started.add(task)
                job.workers.add(event["worker"])
                if not job.announced:
                    job.announced = True
                    on_start()
            elif kind == "progress":
                on_progress(
                    Progress(
                        event["step"], event["steps"], record.done_count, event["images"], len(record.images)
                    )
                )
            elif kind in ("image", "black"):
                image = record.images[event["index"]]
                if image.state == PLANNED:  # a task run twice sends an image twice: keep the first
                    thumbnail = None
                    if kind == "image":
                        png, sheet = data[: event["png_bytes"]], data[event["png_bytes"] :]
                        path = write_png(png, record.folder, image.file.removesuffix(".png"), unique=False)
                        image.file, image.state = path.name, SAVED
                        thumbnail = Image.open(io.BytesIO(sheet)) if sheet else None
                    else:
                        image.state = BLACK
                    on_change(image, thumbnail)
            elif kind == "done":
                job.outstanding.pop(task, None)
                self.redis.hdel(broker.tasks_key(record.id), task)
            elif kind == "failed":
                failed = event["message"]
                raws = raws[:n]
                break
        if raws:
            self.redis.ltrim(key, len(raws), -1)
        if failed is not None:
            raise JobFailed(failed)
        return len(raws)

    def _stop(self, job: _Following) -> None:
        """Queued tasks of the job are dropped, running ones stop at their next step."""
        record = job.record
        self.redis.set(broker.cancel_key(record.id), 1, ex=broker.EVENTS_KEPT_S)
        waiting = [task for task in job.outstanding if task not in job.started]
        if waiting:
            self.app.control.revoke(waiting)
        logger.info(
            "job %s: stopping %d tasks (%d not started)", record.id, len(job.outstanding), len(waiting)
        )

    @staticmethod
    def _stopped(job: _Following, since: float) -> bool:
        """Stop asked: the running tasks have said where they stopped (or will never say)."""
        waited = time.monotonic() - since
        running = [task for task in job.outstanding if task in job.started]
        return waited > STOP_GRACE_S or (waited > 1.0 and not running)

    def _forget(self, job_id: str) -> None:
        self.redis.delete(broker.tasks_key(job_id), broker.events_key(job_id))
