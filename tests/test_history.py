"""The history read back from manifests on disk, and retention."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.helpers import running_server, wait_for
from webui.engine import Engine, GenerationRequest
from webui.history import delete_older_than, past_requests
from webui.outputs import request_dir, write_manifest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def fake_request(root: Path, request_id: str, age: timedelta, now: datetime = NOW) -> Path:
    created = now - age
    folder = request_dir(root, request_id, created)
    (folder / "001_a_s1.png").parent.mkdir(parents=True, exist_ok=True)
    (folder / "001_a_s1.png").write_bytes(b"png")
    write_manifest(
        folder / "manifest.json",
        {
            "request_id": request_id,
            "created": created.isoformat(),
            "images": [{"file": "001_a_s1.png"}, {"file": "gone.png"}],
        },
    )
    return folder


def test_past_requests_come_newest_first_from_the_manifests(tmp_path: Path) -> None:
    for request_id, hours in (("b", 5), ("a", 50), ("c", 1)):
        fake_request(tmp_path, request_id, timedelta(hours=hours))
    running = tmp_path / "2026-11-22" / "115959-running"  # no manifest yet: not listed
    running.mkdir(parents=True)
    broken = fake_request(tmp_path, "broken", timedelta(hours=2))
    (broken / "manifest.json").write_text("{not json")
    found = past_requests(tmp_path)
    assert [r.manifest["request_id"] for r in found] == ["c", "b", "a"]
    assert [p.name for p in found[0].image_paths] == ["001_a_s1.png"]  # a deleted file is left out
    assert [r.manifest["request_id"] for r in past_requests(tmp_path, limit=2)] == ["c", "b"]


def test_retention_deletes_requests_older_than_n_days_and_nothing_else(tmp_path: Path) -> None:
    old = fake_request(tmp_path, "old", timedelta(days=31))
    recent = fake_request(tmp_path, "recent", timedelta(days=29))
    unknown = tmp_path / old.parent.name / "notes"  # not a request of ours: kept
    unknown.mkdir()
    old_day_alone = fake_request(tmp_path, "older", timedelta(days=40)).parent

    assert delete_older_than(tmp_path, 30, NOW) == 2
    assert not old.exists() and recent.is_dir() and unknown.is_dir()
    assert not old_day_alone.exists()  # its day folder was left empty
    assert delete_older_than(tmp_path, 30, NOW) == 0


def test_a_real_request_is_in_the_history(engine: Engine, settings) -> None:
    result = engine.generate(
        GenerationRequest(["a red sneaker"], images_per_prompt=2, seed=4, steps=1, width=32, height=32)
    )
    [past] = past_requests(settings.output_dir)
    assert past.folder == result.output_dir and past.image_paths == [i.path for i in result.images]


def test_the_history_survives_a_restart_of_the_server_and_retention_runs_at_start_up(
    tmp_path: Path, cache_dir: Path
) -> None:
    now = datetime.now(UTC)
    outputs = tmp_path / "outputs"
    old = fake_request(outputs, "old", timedelta(days=31), now)
    recent = fake_request(outputs, "recent", timedelta(days=1), now)
    with running_server(tmp_path, cache_dir, retention_days="30") as server:
        wait_for(lambda: not old.exists(), 30, "retention to delete the old request")
        assert recent.is_dir() and "Retention: deleted 1 requests older than 30 days" in server.log_text()
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

    with running_server(tmp_path, cache_dir, retention_days="30") as server:  # the same output folder
        user = Client(server.url, verbose=False)
        rows = user.predict(api_name="/history")
        request_id = Path(made[0]["file"]).parent.name.split("-")[-1]
        assert [row[-1] for row in rows] == [request_id, "recent"]  # newest first
        assert rows[0][1:6] == ["done", "a red mug (+1 more)", "4 of 4", "32x48", ""]

        images, bundle = user.predict(request_id, api_name="/history_request")
        assert [path for path, _ in images] == [i["file"] for i in made]
        assert [caption for _, caption in images] == [
            "a red mug (seed 8)",
            "a red mug (seed 9)",
            "a navy mug (seed 8)",
            "a navy mug (seed 9)",
        ]
        with zipfile.ZipFile(bundle) as archive:
            assert archive.namelist() == [Path(i["file"]).name for i in made]

        form = user.predict(request_id, api_name="/history_reuse")
        assert list(form[:11]) == [
            "a red mug\na navy mug",
            2,
            8,
            "per-variant",
            "Custom",
            32,
            48,
            1,
            0.0,
            "",
            "studio lighting",
        ]
        with pytest.raises(AppError, match="No request 'nope' in the history"):
            user.predict("nope", api_name="/history_reuse")
