"""Job records in SQLite (the standard library's), in WAL mode, under the state folder.

One row per job: the whole record as JSON (the same text as its manifest), plus the few
columns that History lists and the queue filters on, so that listing thousands of jobs never
parses JSON. Every write is its own transaction. A new job's row is synced to disk before
`add` returns (`synchronous=FULL`): accepted means it survives even a power cut. Later
changes (started, an image saved, ended) are committed to the write-ahead log without a
sync of their own (`synchronous=NORMAL`): they survive the process dying (`kill -9`, a
crash) at once, and a power cut from the next sync on; the images' own files are the truth
that start-up recovery reads anyway. Those writes happen between pipeline calls, where a sync
per write would keep the GPU waiting.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from webui.jobs.record import UNFINISHED, JobRecord, Status
from webui.jobs.views import JobSummary
from webui.outputs import write_manifest

logger = logging.getLogger(__name__)

DATABASE_NAME = "jobs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- acceptance order: the queue's order
    id TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    first_prompt TEXT NOT NULL,
    prompt_count INTEGER NOT NULL,
    images_total INTEGER NOT NULL,
    images_done INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    folder TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status) WHERE {unfinished};
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, seq);  -- History's "mine", newest first
"""
# SQLite uses a partial index only for a query whose WHERE names the same literal values (not
# parameters): both take this text, made from the code's own constants.
_UNFINISHED_SQL = "status IN ({})".format(", ".join(f"'{status}'" for status in UNFINISHED))
_SCHEMA = _SCHEMA.format(unfinished=_UNFINISHED_SQL)


class JobStore:
    """The job database. Thread-safe: one connection, one lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DATABASE_NAME
        self.is_new = not self.path.exists()  # then History is rebuilt from the manifests
        # Mode 600 like the other state files; SQLite gives its WAL and shared-memory files the
        # database's mode. Files of older versions are put right.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        for path in (self.path, *(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm"))):
            if path.exists():
                path.chmod(0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            yield self._db.cursor()

    def add(self, record: JobRecord) -> None:
        """Insert a new job: it goes to the end of the queue's order."""
        self.add_many([record])

    def add_many(self, records: Iterable[JobRecord]) -> None:
        """Insert jobs in this order, in one transaction, synced to disk."""
        with self._cursor() as cur:
            cur.execute("PRAGMA synchronous=FULL")  # for this commit: a WAL sync before it returns
            try:
                self._insert(cur, records)
            finally:
                cur.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def _insert(cur: sqlite3.Cursor, records: Iterable[JobRecord]) -> None:
        cur.execute("BEGIN")
        try:
            cur.executemany(
                "INSERT INTO jobs (id, created, status, owner, first_prompt, prompt_count, images_total,"
                " images_done, width, height, folder, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                ((r.id, _stamp(r.created), *_columns(r)) for r in records),
            )
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def save(self, record: JobRecord) -> None:
        """Write the job's current state."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET status=?, owner=?, first_prompt=?, prompt_count=?, images_total=?,"
                " images_done=?, width=?, height=?, folder=?, record=? WHERE id=?",
                (*_columns(record), record.id),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT record, folder FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else JobRecord.from_record(json.loads(row[0]), Path(row[1]))

    def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, in the order they were accepted."""
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT record, folder FROM jobs WHERE {_UNFINISHED_SQL} ORDER BY seq"
            ).fetchall()
        return [JobRecord.from_record(json.loads(text), Path(folder)) for text, folder in rows]

    def status_counts(self) -> dict[str, int]:
        """How many jobs the database holds in each status (the metrics' jobs by status)."""
        with self._cursor() as cur:
            return dict(cur.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    def listing(self, limit: int, owner: str | None = None) -> list[JobSummary]:
        """The newest `limit` jobs, newest first; only `owner`'s when given."""
        where, args = ("WHERE owner=?", (owner, limit)) if owner else ("", (limit,))
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT id, created, status, owner, first_prompt, prompt_count, images_total, images_done,"
                f" width, height FROM jobs {where} ORDER BY seq DESC LIMIT ?",
                args,
            ).fetchall()
        return [JobSummary(r[0], datetime.fromisoformat(r[1]), Status(r[2]), *r[3:]) for r in rows]

    def finished_before(self, cutoff: datetime) -> list[tuple[str, Path]]:
        """Id and folder of each finished job created before `cutoff`."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._cursor() as cur:
            rows = cur.execute(
                f"SELECT id, folder FROM jobs WHERE created < ? AND status NOT IN ({marks})",
                (_stamp(cutoff), *UNFINISHED),
            ).fetchall()
        return [(job_id, Path(folder)) for job_id, folder in rows]

    def input_digests(self) -> set[str]:
        """Every input image hash a kept job refers to (what retention must not delete)."""
        with self._cursor() as cur:
            inputs = "json_extract(record, '$.inputs')"
            rows = cur.execute(f"SELECT {inputs} FROM jobs WHERE json_array_length({inputs}) > 0").fetchall()
        return {digest for (inputs,) in rows for digest in json.loads(inputs)}

    def delete(self, job_id: str) -> None:
        with self._cursor() as cur:
            cur.execute("DELETE FROM jobs WHERE id=?", (job_id,))


def persist(store: JobStore, record: JobRecord) -> None:
    """The job's state in the database and in its manifest, the portable copy."""
    store.save(record)
    try:
        write_manifest(record.manifest_path, record.to_record())
    except OSError as exc:  # the database has it; the folder may be full or gone
        logger.error("job %s: could not write its manifest: %s", record.id, exc)


def _columns(record: JobRecord) -> tuple:
    r = record.request
    return (
        record.status,
        record.owner,
        r.prompts[0] if r.prompts else "",
        len(r.prompts),
        len(record.images),
        len(record.saved),
        r.width,
        r.height,
        str(record.folder),
        json.dumps(record.to_record(), ensure_ascii=False),
    )


def _stamp(moment: datetime) -> str:
    """One fixed text form of an aware time, so that the column sorts and compares as time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
