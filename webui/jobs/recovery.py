"""Start-up: the database rebuilt from the manifests when it is lost, the jobs of the last run
taken up again, and retention.

Files on disk are the truth about images: a PNG appears under its planned name only when
complete, so a planned image whose file exists is made, whatever the database says, and the
hidden temporary files of a killed process are deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from webui.inputs import InputStore
from webui.jobs.record import DONE, FAILED, PLANNED, QUEUED, RUNNING, SAVED, JobRecord, now_utc
from webui.jobs.store import JobStore, persist
from webui.outputs import MANIFEST_NAME, remove_partial_files

logger = logging.getLogger(__name__)


def rebuild(store: JobStore, output_dir: Path) -> int:
    """Fill an empty database from the manifests under `output_dir`, oldest first; how many."""
    found = []
    for path in output_dir.glob(f"*/*/{MANIFEST_NAME}"):
        try:
            found.append(JobRecord.from_record(json.loads(path.read_text("utf-8")), path.parent))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Skipping %s: not a job manifest (%s)", path, exc)
    found.sort(key=lambda record: record.created)
    store.add_many(found)
    logger.info("Rebuilt the job database from %d manifests in %s", len(found), output_dir)
    return len(found)


def recover(store: JobStore, *, max_resumes: int, count_crashes: bool = True) -> list[JobRecord]:
    """The jobs the last run left queued or running, ready to run again, in their order.

    A job that was running when the process died counts a crash; one that has been resumed
    after `max_resumes` crashes (ZIMAGE_CRASH_RESUMES) and died again fails with a message
    instead. Without
    `count_crashes` (distributed mode: jobs run on the workers, which count their own losses)
    a running job is only taken up again.
    """
    ready = []
    for record in store.unfinished():
        crashed = count_crashes and record.status == RUNNING
        _reconcile(record)
        if crashed and record.crash_resumes >= max_resumes:
            record.error = (
                f"Not resumed again: the server went down {record.crash_resumes + 1} times while this job "
                f"ran, so the job itself may be what brings it down. Its {len(record.saved)} finished "
                "images are kept; an admin can find the cause in the log."
            )
            _end(store, record, FAILED)
            logger.error("job %s failed: %s", record.id, record.error)
            continue
        if not record.pending:  # every image was made just before the process went down
            _end(store, record, DONE)
            continue
        if record.started is not None:
            record.resumed += 1
            record.crash_resumes += crashed
            how = "after a crash" if crashed else "after a shutdown"
            logger.info(
                "job %s resumed (%s): %d of %d images still to make",
                record.id,
                how,
                len(record.pending),
                len(record.images),
            )
        else:
            logger.info("job %s waits again: it had not started", record.id)
        record.status = QUEUED
        persist(store, record)
        ready.append(record)
    return ready


def _reconcile(record: JobRecord) -> None:
    """Image states from the files on disk; leftovers of a half-written file removed."""
    if record.folder.is_dir():
        remove_partial_files(record.folder)
    for image in record.images:
        exists = record.path_of(image).is_file()
        if image.state == PLANNED and exists:
            image.state = SAVED
        elif image.state == SAVED and not exists:
            image.state = PLANNED  # deleted by hand: made again


def _end(store: JobStore, record: JobRecord, status: str) -> None:
    record.status, record.finished = status, now_utc()
    persist(store, record)


def delete_older_than(
    store: JobStore, output_dir: Path, days: int, now: datetime, inputs: InputStore | None = None
) -> int:
    """Delete finished jobs created more than `days` days before `now`: their folder and their
    record; then day folders left empty, and `inputs` no kept job refers to. Returns how many
    jobs went."""
    removed = 0
    for job_id, folder in store.finished_before(now - timedelta(days=days)):
        if folder.is_relative_to(output_dir.resolve()) and folder.is_dir():
            shutil.rmtree(folder)
        store.delete(job_id)
        removed += 1
    for day in output_dir.glob("*/"):
        if day.is_dir() and not any(day.iterdir()):
            day.rmdir()
    if removed:
        logger.info("Retention: deleted %d jobs older than %d days from %s", removed, days, output_dir)
    if inputs is not None:
        inputs.sweep(store.input_digests())
    return removed
