"""A GPU worker's work: Celery tasks run on the engine's lane, answers sent through Redis.

`WorkerState.make` is the task (webui/distributed/worker.py registers it): it checks the
task's model, counts the task's starts (a start that never finished means its worker died),
runs the images on the lane (a task that lost a worker before runs alone) and sends each
finished PNG, progress and the outcome to the job's event list. `watch` stops tasks of
stopped jobs and says every few seconds that the worker is alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageOps

from webui.distributed import broker
from webui.distributed.broker import WorkerInfo
from webui.engine import Engine, ImageTask, Progress
from webui.inputs import InputStore, input_store
from webui.jobs.execute import prepare_inputs
from webui.loading import dtype_name
from webui.outputs import encode_png
from webui.product import composite
from webui.request import GenerationRequest, RequestError
from webui.settings import Settings
from webui.sheet import SHEET_CELL

logger = logging.getLogger("webui.worker")

PROGRESS_EVERY_S = 0.2  # at most this often a progress event per task, and at each call's end


class Turns:
    """Tasks share the lane, except one that lost a worker before: it runs alone, so that
    whatever killed that worker cannot take other tasks down with it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running, self._alone, self._alone_waiting = 0, False, 0

    @contextlib.contextmanager
    def turn(self, alone: bool) -> Iterator[None]:
        with self._cond:
            self._alone_waiting += alone
            self._cond.wait_for(
                lambda: not self._alone and (self._running == 0 if alone else not self._alone_waiting)
            )
            self._alone_waiting -= alone
            self._running += 1
            self._alone = alone
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._alone = self._alone and not alone
                self._cond.notify_all()


class WorkerState:
    """The loaded engine and what the worker tells Redis: events, heartbeats."""

    def __init__(self, engine: Engine, settings: Settings, name: str) -> None:
        self.engine, self.settings, self.name = engine, settings, name
        self.model = broker.model_key(engine.model.label, dtype_name(engine.model.dtype))
        self.queue = broker.queue_for(self.model)
        self.redis = broker.redis_client(settings.broker_url)
        self.turns = Turns()
        self.inputs = input_store(settings.state_path)  # the jobs' input images, fetched once each
        self.started = time.time()
        self._cancels: dict[str, list[threading.Event]] = {}  # job id -> its running tasks' flags
        self._lock = threading.Lock()

    def emit(self, job_id: str, task_id: str, kind: str, data: bytes = b"", **fields: Any) -> None:
        key = broker.events_key(job_id)
        self.redis.pipeline().rpush(key, broker.pack_event(kind, task_id, data, **fields)).expire(
            key, broker.EVENTS_KEPT_S
        ).execute()

    def make(self, payload: dict[str, Any]) -> None:
        """Run one task: its images on the lane, each sent back as PNG bytes."""
        job, task = payload["job"], payload["task"]
        if payload.get("v") != broker.MESSAGE_VERSION or payload["model"] != self.model:
            message = (
                f"Worker {self.name} serves {self.model}; this task needs {payload.get('model')} "
                f"(message version {payload.get('v')}). Give the web host and its workers the same "
                "ZIMAGE_MODEL and ZIMAGE_DTYPE."
            )
            self._refuse(job, task, message)
            return
        if self.redis.exists(broker.cancel_key(job)):  # stopped while it waited
            self.emit(job, task, "done", stopped=True)
            return
        starts = self.redis.incr(broker.starts_key(task))
        self.redis.expire(broker.starts_key(task), broker.EVENTS_KEPT_S)
        lost = starts - 1  # earlier starts that never finished: their workers died
        if lost >= broker.MAX_WORKER_LOSSES:
            message = (
                f"Not run again: {lost} workers died while running this part of the job (images "
                f"{', '.join(str(i['index'] + 1) for i in payload['images'])}), so it may be what "
                "kills them. Finished images are kept; an admin can find the cause in the worker logs."
            )
            self._refuse(job, task, message)
            self.redis.delete(broker.starts_key(task))
            return
        with self.turns.turn(alone=lost > 0):
            self._run(payload, job, task, lost)
        self.redis.delete(broker.starts_key(task))

    def _refuse(self, job: str, task: str, message: str) -> None:
        """The task is not run (or failed): its job fails with `message`."""
        logger.error("job %s task %s failed: %s", job, task, message)
        self.emit(job, task, "failed", message=message)

    def _run(self, payload: dict[str, Any], job: str, task: str, lost: int) -> None:
        request = GenerationRequest.from_record(payload["request"])
        images, sheet = {i["index"]: i for i in payload["images"]}, payload.get("sheet", False)
        try:
            starts = prepare_inputs(request, self.fetch_inputs(request.inputs))
            self.fetch_loras(request.loras)
        except RequestError as exc:
            self._refuse(job, task, str(exc))
            return
        tasks = [
            ImageTask(
                i["index"], i["prompt"], i["seed"], None if i.get("input") is None else starts[i["input"]][0]
            )
            for i in payload["images"]
        ]
        logger.info(
            "job %s task %s: %d images%s", job, task, len(tasks), f" (after {lost} lost workers)" * bool(lost)
        )
        self.emit(job, task, "started", worker=self.name)
        last = 0.0

        def on_image(t: ImageTask, picture: Image.Image) -> None:
            source = images[t.index].get("input")
            placed = None if source is None else starts[source][1]
            if placed is not None:  # the product's own pixels, as the embedded server does
                picture = composite(picture, placed)
            data = encode_png(picture, images[t.index]["parameters"])
            # The contact sheet's thumbnail too: the web host need not decode the PNG for it.
            thumbnail = encode_png(ImageOps.contain(picture, (SHEET_CELL, SHEET_CELL)), {}) if sheet else b""
            self.emit(job, task, "image", data + thumbnail, index=t.index, png_bytes=len(data))

        def on_progress(p: Progress) -> None:
            nonlocal last
            if p.step == p.steps or time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                self.emit(job, task, "progress", step=p.step, steps=p.steps, images=p.chunk_images)

        cancel = threading.Event()
        with self._lock:
            self._cancels.setdefault(job, []).append(cancel)
        try:
            while True:
                try:
                    outcome = self.engine.run(
                        request,
                        tasks,
                        on_image=on_image,
                        label=f"{job}/{task}",
                        on_progress=on_progress,
                        cancel=cancel,
                    )
                    break
                except RequestError as exc:
                    if not self.engine.stalled:
                        self._refuse(job, task, str(exc))
                        return
                # The device hung, not the task: this process exits 70 for a fresh one unless the
                # call comes back; the task runs again here, or on another worker after
                # ZIMAGE_TASK_TIMEOUT (it is not acknowledged).
                logger.error("job %s task %s: the pipeline call stalled; the task will run again", job, task)
                while self.engine.stalled:
                    time.sleep(0.5)
        finally:
            with self._lock:
                self._cancels[job].remove(cancel)
                if not self._cancels[job]:
                    del self._cancels[job]
        for index in outcome.black:
            self.emit(job, task, "black", index=index)
        self.emit(job, task, "done", stopped=outcome.stopped)
        logger.info("job %s task %s: done%s", job, task, " (stopped)" * outcome.stopped)

    def fetch_inputs(self, digests: tuple[str, ...]) -> InputStore:
        """The store holding every input of a task: those not here yet fetched from Redis,
        checked against their hash, and kept for the next task that needs them."""
        for digest in digests:
            if self.inputs.has(digest):
                continue
            data = self.redis.get(broker.input_key(digest))
            if data is None:
                raise RequestError("no_input", digest=digest[:16])
            if hashlib.sha256(data).hexdigest() != digest:  # checked before it is kept
                raise RequestError("plain", text=f"Input image {digest[:16]}... arrived damaged from Redis.")
            self.inputs.put_bytes(data)
        return self.inputs

    def fetch_loras(self, loras: tuple[tuple[str, float, str], ...]) -> None:
        """Each LoRA of a task that this worker lacks (that version, by hash), fetched from where
        the web host put it and kept; RequestError naming the file when it is nowhere."""
        library = self.engine.loras
        for name, _, digest in loras:
            if library.has(name, digest):
                continue
            data = self.redis.get(broker.lora_key(digest))
            if data is None:
                raise RequestError("lora_not_sent", name=name, worker=self.name, digest=digest[:16])
            library.keep_copy(data, digest)
            logger.info("Fetched LoRA %s (%s, %.1f MB) from Redis", name, digest[:12], len(data) / 1e6)

    def watch(self) -> None:
        """Forever: stop the tasks of stopped jobs at their next step; say we are alive."""
        beat, failing = 0.0, False
        while True:
            try:
                with self._lock:
                    running = dict(self._cancels)
                if running:
                    flags = self.redis.pipeline()
                    for job in running:
                        flags.exists(broker.cancel_key(job))
                    for events, stop in zip(running.values(), flags.execute(), strict=True):
                        if stop:
                            for event in events:
                                event.set()
                if time.monotonic() - beat >= broker.HEARTBEAT_S:
                    beat = time.monotonic()
                    self.redis.hset(broker.WORKERS_KEY, self.name, self.info().to_json())
                if failing:
                    logger.info("Redis answers again")
                failing = False
            except Exception as exc:  # Redis away: keep trying; Celery reconnects on its own
                if not failing:
                    logger.warning("Redis unreachable (%s); retrying", exc)
                failing = True
            time.sleep(0.25)

    def info(self) -> WorkerInfo:
        stats = self.engine.stats
        return WorkerInfo(
            name=self.name,
            pid=os.getpid(),
            host=socket.gethostname(),
            device=str(self.engine.model.device),
            model=self.model,
            busy=self.engine.busy,
            images=stats.images,
            calls=stats.calls,
            busy_s=round(stats.busy_s, 3),
            seconds_per_unit=stats.seconds_per_unit(),
            started=self.started,
            last_seen=time.time(),
            loras=tuple(self.engine.loras.hashes()),
        )

    def forget(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.hdel(broker.WORKERS_KEY, self.name)
