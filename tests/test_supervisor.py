"""Real Supervisor: launch.sh starts the app, supervisorctl restarts it mid-batch, stop cleans up."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from gradio_client import Client
from PIL import Image

from tests.helpers import PROJECT, free_port, get_json, healthy, wait_for


@pytest.fixture
def project(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A copy of the project (sharing .venv) with its own port, run/ and logs/."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("webui", "supervisor", "assets"):
        shutil.copytree(PROJECT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("launch.sh", "requirements.txt"):
        shutil.copy2(PROJECT / name, copy / name)
    (copy / ".venv").symlink_to(PROJECT / ".venv")
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ZIMAGE_CACHE_DIR": str(cache_dir),
        "ZIMAGE_PORT": str(port),
        "ZIMAGE_MIN_SIZE": "32",
        "WEBUI_STARTSECS": "5",
    }
    try:
        yield copy, env, f"http://127.0.0.1:{port}/"
    finally:
        subprocess.run(["./launch.sh", "stop"], cwd=copy, env=env, capture_output=True, timeout=120)
        for process in processes_of(copy):
            process.kill()


def processes_of(copy: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if str(copy) in " ".join(process.info["cmdline"] or []) or process.info["cwd"] == str(copy):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run(copy: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=copy, env=env, capture_output=True, text=True, timeout=300)


def test_launch_restart_mid_batch_and_stop(project: tuple[Path, dict[str, str], str]) -> None:
    copy, env, url = project
    started = run(copy, env, "./launch.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"ready: {url}" in started.stdout
    assert get_json(url + "healthz")["status"] == "ok"

    # The control socket is private to its owner and nothing of Supervisor's listens on TCP.
    assert stat.S_IMODE((copy / "run" / "supervisor.sock").stat().st_mode) == 0o700
    supervisord = psutil.Process(int((copy / "run" / "supervisord.pid").read_text()))
    assert not [c for c in supervisord.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]

    client = Client(url, verbose=False)
    first = client.predict(
        prompts="a red sneaker",
        images_per_prompt=2,
        seed=3,
        width=32,
        height=32,
        steps=2,
        guidance_scale=0.0,
        api_name="/generate",
    )
    kept = [Path(i["file"]) for i in first[2]]
    assert all(p.is_file() and p.is_relative_to(copy / "outputs") for p in kept)

    # Restart while a long batch is being written.
    old_children = [p.pid for p in supervisord.children()]
    job = client.submit(
        prompts="\n".join(f"item {n}" for n in range(20)),
        images_per_prompt=4,
        seed=1,
        width=256,
        height=256,
        steps=8,
        guidance_scale=0.0,
        api_name="/generate",
    )
    outputs = copy / "outputs"
    wait_for(lambda: len(list(outputs.rglob("*.png"))) >= 8, 60, "the batch to write images")
    restarted = run(
        copy, env, ".venv/bin/supervisorctl", "-c", "supervisor/supervisord.conf", "restart", "webui"
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    wait_for(lambda: healthy(url), 120, "the app to come back")
    assert [p.pid for p in supervisord.children()] != old_children
    log = (copy / "logs" / "supervisord.log").read_text()
    assert "stopped: webui (terminated by SIGTERM)" in log and "SIGKILL" not in log  # within stopwaitsecs
    with pytest.raises(Exception):  # noqa: B017 (the request died with the old process)
        job.result(timeout=10)

    for path in outputs.rglob("*"):
        assert not path.name.endswith(".tmp"), path
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()  # every file that is there is complete
    assert all(p.is_file() for p in kept)  # written before the restart, still there

    again = Client(url, verbose=False).predict(
        prompts="a navy mug",
        images_per_prompt=1,
        seed=9,
        width=32,
        height=32,
        steps=1,
        guidance_scale=0.0,
        api_name="/generate",
    )
    assert len(again[0]) == 1

    # kill -9 of the app: Supervisor starts a new one; nothing of the old one is left.
    [app] = supervisord.children()
    app.kill()
    app.wait(10)
    wait_for(lambda: healthy(url), 120, "the app to come back after kill -9")
    [new_app] = supervisord.children()
    assert new_app.pid != app.pid and not app.is_running()
    assert sorted(p.pid for p in processes_of(copy)) == sorted([supervisord.pid, new_app.pid])
    assert "exited: webui (terminated by SIGKILL" in (copy / "logs" / "supervisord.log").read_text()

    stopped = run(copy, env, "./launch.sh", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not supervisord.is_running()
    assert processes_of(copy) == []
    assert "Server stopped" in (copy / "logs" / "webui.log").read_text()


def test_a_model_that_fails_to_load_is_retried_a_bounded_number_of_times_then_fatal(
    project: tuple[Path, dict[str, str], str],
) -> None:
    copy, env, _ = project
    not_a_pipeline = copy / "models" / "broken"
    not_a_pipeline.mkdir(parents=True)  # a folder without model_index.json
    # Each attempt fails within a second; startsecs leaves room for a slow moment of the machine.
    started = run(copy, {**env, "ZIMAGE_MODEL": str(not_a_pipeline), "WEBUI_STARTSECS": "15"}, "./launch.sh")
    assert started.returncode == 1 and "the WebUI did not start (FATAL)" in started.stderr, started.stderr
    assert "has no model_index.json" in started.stderr  # the reason, from the log's tail

    def spawns() -> int:
        return (copy / "logs" / "supervisord.log").read_text().count("spawned: 'webui'")

    assert spawns() == 4  # the first start and startretries=3
    log = (copy / "logs" / "supervisord.log").read_text()
    assert "gave up: webui entered FATAL state, too many start retries too quickly" in log
    assert (copy / "logs" / "webui.log").read_text().count("has no model_index.json") == 4
    time.sleep(3)  # and no endless loop: nothing more is started
    status = run(copy, env, ".venv/bin/supervisorctl", "-c", "supervisor/supervisord.conf", "status", "webui")
    assert "FATAL" in status.stdout and spawns() == 4
