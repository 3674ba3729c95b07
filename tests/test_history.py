"""History: the job database (listing, unfinished jobs), its rebuild from the manifests, retention,
and all of it across restarts of the real server."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.helpers import make, running_server, wait_for
from webui.engine import Engine
from webui.inputs import InputStore
from webui.jobs.record import QUEUED, RUNNING, JobRecord
from webui.jobs.recovery import delete_older_than, rebuild
from webui.jobs.store import DATABASE_NAME, JobStore
from webui.outputs import image_stem, request_dir, write_manifest
from webui.request import GenerationRequest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SMALL = {"width": 32, "height": 32, "steps": 1}


def first_version_manifest(root: Path, request_id: str, age: timedelta, now: datetime = NOW) -> Path:
    """A request folder as the first version wrote it: manifest.json lists the images made."""
    created = now - age
    folder = request_dir(root, request_id, created)
    folder.mkdir(parents=True)
    name = f"{image_stem(1, 'a red mug', 7)}.png"
    (folder / name).write_bytes(b"png")
    manifest = {
        "request_id": request_id,
        "created": created.isoformat(timespec="seconds"),
        "status": "done",
        "user": None,
        "model": "demo model",
        "demo": True,
        "prompts": ["a red mug"],
        "style": "",
        "images_per_prompt": 2,
        "seed": 7,
        "seed_policy": "per-image",
        "width": 32,
        "height": 32,
        "steps": 1,
        "guidance_scale": 0.0,
        "negative_prompt": "",
        "images": [{"file": name, "prompt_index": 0, "variant": 0, "prompt": "a red mug", "seed": 7}],
        "black_seeds": [8],
        "elapsed_s": 0.5,
        "images_per_s": 2.0,
    }
    write_manifest(folder / "manifest.json", manifest)
    return folder


def sqlite_steps(store: JobStore, read: Callable[[], object]) -> int:
    """SQLite's virtual-machine steps for `read` on the store's connection: they grow with the
    rows a query visits, so a query that scans the table takes ~50 times more at 20,000 jobs
    than at 400. (The store's one connection is private; only this test looks at it.)"""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    store._db.set_progress_handler(count, 1)
    try:
        read()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def test_the_listing_is_newest_first_with_unfinished_jobs_and_reads_no_more_rows_at_20000_jobs(
    engine: Engine, tmp_path: Path
) -> None:
    template = make(
        engine, GenerationRequest(["a red mug", "a navy mug"], images_per_prompt=2, seed=1, **SMALL)
    )

    def store_of(count: int) -> JobStore:
        """`count` jobs of three people and, in the middle, one of a fourth; the newest queued."""
        store = JobStore(tmp_path / f"state-{count}")
        owner = lambda n: "rare" if n == count // 2 else f"user{n % 3}"  # noqa: E731
        store.add_many(
            dataclasses.replace(
                template.record,
                id=f"job{n:05d}",
                created=NOW + timedelta(seconds=n),
                owner=owner(n),
                status=QUEUED if n == count - 1 else template.record.status,
            )
            for n in range(count)
        )
        return store

    small, store = store_of(400), store_of(20_000)
    rows = store.listing(200)
    assert [r.id for r in rows] == [f"job{n:05d}" for n in range(19_999, 19_799, -1)]
    assert rows[0].status == "queued" and rows[1].status == "done"
    assert (rows[1].first_prompt, rows[1].prompt_count, rows[1].images_total, rows[1].images_done) == (
        "a red mug",
        2,
        4,
        4,
    )
    assert [r.id for r in store.listing(3, owner="user1")] == ["job19999", "job19996", "job19993"]
    assert [r.id for r in store.listing(3, owner="rare")] == ["job10000"]
    assert [r.id for r in store.unfinished()] == ["job19999"]
    # History's reads cost what they cost at 400 jobs: none of them scans the table.
    for name, read in (
        ("the newest 200", lambda s: s.listing(200)),
        ("one person's newest", lambda s: s.listing(3, owner="user1")),
        ("the only job of a person", lambda s: s.listing(3, owner="rare")),
        ("the unfinished jobs", lambda s: s.unfinished()),
    ):
        at_400, at_20000 = (
            sqlite_steps(small, lambda r=read: r(small)),
            sqlite_steps(store, lambda r=read: r(store)),
        )
        assert at_20000 < 1.5 * at_400 + 100, f"{name}: {at_20000} steps at 20,000 jobs, {at_400} at 400"


def test_a_lost_database_is_rebuilt_from_the_manifests_of_both_versions(engine: Engine, settings) -> None:
    old = first_version_manifest(settings.output_dir, "0ld", timedelta(days=3), datetime.now(UTC))
    new = make(engine, GenerationRequest(["a navy mug"], images_per_prompt=2, seed=3, **SMALL))
    broken = first_version_manifest(settings.output_dir, "broken", timedelta(days=2), datetime.now(UTC))
    (broken / "manifest.json").write_text("{not json")

    store = JobStore(settings.state_path)
    assert store.is_new
    assert rebuild(store, settings.output_dir) == 2
    assert [r.id for r in store.listing(10)] == [new.record.id, "0ld"]  # newest first, the broken one skipped
    again = store.get(new.record.id)
    assert again is not None and again.to_record() == new.record.to_record()
    first = store.get("0ld")
    assert first is not None and first.folder == old
    assert [(i.seed, i.state) for i in first.images] == [(7, "saved"), (8, "black")]
    assert JobStore(settings.state_path).is_new is False  # now it exists


def test_retention_deletes_finished_jobs_older_than_n_days_and_nothing_else(engine: Engine, settings) -> None:
    store = JobStore(settings.state_path)
    old = first_version_manifest(settings.output_dir, "old", timedelta(days=31))
    recent = first_version_manifest(settings.output_dir, "recent", timedelta(days=29))
    unknown = old.parent / "notes"  # not a job of ours: kept
    unknown.mkdir()
    older_alone = first_version_manifest(settings.output_dir, "older", timedelta(days=40))
    rebuild(store, settings.output_dir)
    unfinished = JobRecord.plan(
        GenerationRequest(["waiting"], **SMALL),
        output_root=settings.output_dir,
        model="demo model",
        demo=True,
    )
    unfinished.created, unfinished.status = NOW - timedelta(days=60), RUNNING
    store.add(unfinished)

    assert delete_older_than(store, settings.output_dir, 30, NOW) == 2
    assert not old.exists() and recent.is_dir() and unknown.is_dir()
    assert not older_alone.parent.exists()  # its day folder was left empty
    assert sorted(r.id for r in store.listing(10)) == sorted(["recent", unfinished.id])
    assert delete_older_than(store, settings.output_dir, 30, NOW) == 0


def test_retention_deletes_input_images_that_no_kept_job_uses(engine: Engine, settings) -> None:
    store, inputs = JobStore(settings.state_path), InputStore(settings.state_path / "inputs")
    colours = [Image.new("RGBA", (8, 8), (n, 0, 0, 255)) for n in (10, 20, 30)]
    only_old, shared, unused = (inputs.put(c) for c in colours)
    for age, used in ((40, [only_old, shared]), (5, [shared])):
        record = JobRecord.plan(
            GenerationRequest(["x"], kind="variation", inputs=used, **SMALL),
            output_root=settings.output_dir,
            model="demo model",
            demo=True,
        )
        record.created, record.status = NOW - timedelta(days=age), "done"
        store.add(record)
    for path in inputs.folder.rglob("*.png"):  # stored long ago: past the grace of a job being accepted
        os.utime(path, (0, 0))
    fresh = inputs.put(Image.new("RGBA", (8, 8), "white"))  # just stored, its job not yet accepted
    assert delete_older_than(store, settings.output_dir, 30, NOW, inputs) == 1
    assert [inputs.has(d) for d in (only_old, shared, unused, fresh)] == [False, True, False, True]


def test_the_history_survives_restarts_and_a_lost_database_and_retention_runs_at_start_up(
    tmp_path: Path, cache_dir: Path
) -> None:
    now = datetime.now(UTC)
    outputs = tmp_path / "outputs"
    old = first_version_manifest(outputs, "old", timedelta(days=31), now)
    recent = first_version_manifest(outputs, "recent", timedelta(days=1), now)
    with running_server(tmp_path, cache_dir, retention_days="30") as server:
        wait_for(lambda: not old.exists(), 30, "retention to delete the old request")
        assert recent.is_dir() and "Retention: deleted 1 jobs older than 30 days" in server.log_text()
        assert "Rebuilt the job database from 2 manifests" in server.log_text()
        made = Client(server.url, verbose=False).predict(
            prompts="a {red|navy} mug",
            images_per_prompt=2,
            seed=8,
            width=32,
            height=48,
            steps=1,
            guidance_scale=0.0,
            style="studio lighting",
            seed_policy="per-variant",
            api_name="/generate",
        )[2]

    database = tmp_path / "state" / DATABASE_NAME
    assert database.is_file()
    for path in database.parent.glob(f"{DATABASE_NAME}*"):  # lost, with its write-ahead log
        path.unlink()
    with running_server(tmp_path, cache_dir, retention_days="30") as server:  # the same output folder
        assert "Rebuilt the job database from 2 manifests" in server.log_text()
        user = Client(server.url, verbose=False)
        rows = user.predict(api_name="/history")
        job_id = Path(made[0]["file"]).parent.name.split("-")[-1]
        assert [row[-1] for row in rows] == [job_id, "recent"]  # newest first
        assert rows[0][1:6] == ["done", "a red mug (+1 more)", "4 of 4", "32x48", ""]
        assert rows[1][1:4] == ["done", "a red mug", "1 of 2"]

        images, bundle = user.predict(job_id, api_name="/history_request")
        assert [path for path, _ in images] == [i["file"] for i in made]
        captions = ["a red mug (seed 8)", "a red mug (seed 9)", "a navy mug (seed 8)", "a navy mug (seed 9)"]
        assert [caption for _, caption in images] == captions
        with zipfile.ZipFile(bundle) as archive:
            assert archive.namelist() == [Path(i["file"]).name for i in made]

        form = user.predict(job_id, api_name="/history_reuse")
        assert form == {
            "prompts": "a red mug\na navy mug",
            "images_per_prompt": 2,
            "seed": 8,
            "seed_policy": "per-variant",
            "preset": "Custom",
            "width": 32,
            "height": 48,
            "steps": 1,
            "guidance_scale": 0.0,
            "negative_prompt": "",
            "style": "studio lighting",
            "kind": "text",
            "strength": 0.6,
            "product_scale": 0.6,
            "position": "center",
            "model": "demo model",  # filled in at acceptance: the server's
            "reused": [],
            "images": None,
            "painted": None,
            **{f"lora_{n}": "" for n in range(1, 5)},  # no LoRA: the rows cleared
            **{f"lora_strength_{n}": 1.0 for n in range(1, 5)},
        }
        with pytest.raises(AppError, match="No request 'nope' in the history"):
            user.predict("nope", api_name="/history_reuse")
    assert json.loads((Path(made[0]["file"]).parent / "manifest.json").read_text())["status"] == "done"
