"""Real Supervisor: launch.sh starts the app; a restart or kill -9 mid-job loses no work; stop cleans up."""

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
from PIL import Image, ImageChops

from tests.helpers import PROJECT, free_port, get_json, healthy, wait_for
from webui.outputs import read_png_parameters


@pytest.fixture
def project(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A copy of the project (sharing .venv) with its own port, run/ and logs/.

    Its Supervisor runs the real app with tests/faults.py's hooks (`python -m tests.faults`,
    faults armed by files in `faults/` of the copy), so that a test can make the jobs slow
    enough, on any machine, to be caught mid-way.
    """
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("webui", "supervisor", "assets"):
        shutil.copytree(PROJECT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("launch.sh", "requirements.txt"):
        shutil.copy2(PROJECT / name, copy / name)
    (copy / "tests").mkdir()
    shutil.copy2(PROJECT / "tests" / "faults.py", copy / "tests" / "faults.py")
    (copy / "faults").mkdir()
    program = copy / "supervisor" / "webui.conf"
    conf = program.read_text().replace(" -m webui\n", " -m tests.faults\n")
    conf = conf.replace("\nenvironment=", f'\nenvironment=WEBUI_FAULTS="{copy / "faults"}",')
    assert "tests.faults" in conf and "WEBUI_FAULTS" in conf
    program.write_text(conf)
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


SHOT = {"images_per_prompt": 4, "width": 128, "height": 128, "steps": 8, "guidance_scale": 0.0}
SLOW_STEP_S = "0.05"  # each call of 8 steps takes 0.4 s or more: 64 images outlast a restart


def submit_four_users(url: str, tag: str) -> list[str]:
    """Four users each queue a 16-image job (4 prompts x 4); their job ids."""
    ids = []
    for n in range(4):
        prompts = "\n".join(f"{tag} user {n} shot {k}" for k in range(4))
        answer = Client(url, verbose=False).predict(
            prompts=prompts, seed=1000 * n, **SHOT, api_name="/submit"
        )
        ids.append(answer["id"])
    return ids


def made_pngs(copy: Path, ids: list[str]) -> int:
    return sum(len(list(copy.glob(f"outputs/*/*-{job_id}/0*.png"))) for job_id in ids)


def wait_done(url: str, ids: list[str]) -> list[dict]:
    """Each job's status once all have ended (asked by id, as a script that lost its connection)."""
    client = Client(url, verbose=False)
    wait_for(
        lambda: all(client.predict(i, api_name="/job")["status"] == "done" for i in ids), 180, "the jobs"
    )
    return [client.predict(i, api_name="/job") for i in ids]


def check_complete(copy: Path, jobs: list[dict]) -> None:
    """Every job: exactly its 16 PNGs, each carrying its planned seed; no temporary file anywhere."""
    for n, job in enumerate(jobs):
        folder = Path(job["folder"])
        pngs = sorted(folder.glob("0*.png"))
        assert len(pngs) == 16 and [i["seed"] for i in job["images"]] == list(range(1000 * n, 1000 * n + 16))
        assert sorted(read_png_parameters(p)["seed"] for p in pngs) == list(range(1000 * n, 1000 * n + 16))
        for path in pngs:
            with Image.open(path) as image:
                image.load()  # complete
    assert not [p for p in (copy / "outputs").rglob("*") if p.name.endswith(".tmp")]


def check_resumed_image(url: str, jobs: list[dict], since: float) -> None:
    """An image made after the restart equals the same prompt and seed made alone."""
    resumed = [i for job in jobs for i in job["images"] if Path(i["file"]).stat().st_mtime > since]
    assert resumed, "no image was made after the restart"
    image = resumed[0]
    alone = Client(url, verbose=False).predict(
        prompts=image["prompt"], seed=image["seed"], **{**SHOT, "images_per_prompt": 1}, api_name="/generate"
    )[2][0]
    with Image.open(image["file"]) as first, Image.open(alone["file"]) as second:
        assert max(high for _, high in ImageChops.difference(first, second).getextrema()) <= 2


def test_jobs_survive_launch_restart_and_kill_9_under_supervisor(
    project: tuple[Path, dict[str, str], str],
) -> None:
    copy, env, url = project
    started = run(copy, env, "./launch.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"ready: {url}" in started.stdout
    assert get_json(url + "healthz")["status"] == "ok"

    # The control socket is private to its owner and nothing of Supervisor's listens on TCP.
    assert stat.S_IMODE((copy / "run" / "supervisor.sock").stat().st_mode) == 0o700
    supervisord = psutil.Process(int((copy / "run" / "supervisord.pid").read_text()))
    assert not [c for c in supervisord.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]

    # ./launch.sh restart (supervisorctl restart: SIGTERM) while four users' jobs run.
    (copy / "faults" / "slow").write_text(SLOW_STEP_S)
    ids = submit_four_users(url, "restart")
    wait_for(lambda: made_pngs(copy, ids) >= 8, 120, "the jobs to save their first images")
    old_children = [p.pid for p in supervisord.children()]
    restarted_at = time.time()
    restarted = run(copy, env, "./launch.sh", "restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert [p.pid for p in supervisord.children()] != old_children
    log = (copy / "logs" / "supervisord.log").read_text()
    assert "stopped: webui (terminated by SIGTERM)" in log and "SIGKILL" not in log  # within stopwaitsecs
    jobs = wait_done(url, ids)
    check_complete(copy, jobs)
    assert [job["resumed"] for job in jobs] == [1, 1, 1, 1]  # each was cut by the restart, then resumed
    webui_log = (copy / "logs" / "webui.log").read_text()
    assert webui_log.count("resumed (after a shutdown)") == 4
    check_resumed_image(url, jobs, restarted_at)

    # kill -9 of the app: Supervisor starts a new one, which takes the jobs up again.
    ids = submit_four_users(url, "killed")
    wait_for(lambda: made_pngs(copy, ids) >= 8, 120, "the jobs to save their first images")
    [app] = supervisord.children()
    killed_at = time.time()
    app.kill()
    app.wait(10)
    assert made_pngs(copy, ids) < 64, "the jobs finished before the kill: make them longer"
    wait_for(lambda: healthy(url), 120, "the app to come back after kill -9")
    [new_app] = supervisord.children()
    assert new_app.pid != app.pid and not app.is_running()
    assert sorted(p.pid for p in processes_of(copy)) == sorted([supervisord.pid, new_app.pid])
    assert "exited: webui (terminated by SIGKILL" in (copy / "logs" / "supervisord.log").read_text()
    jobs = wait_done(url, ids)
    check_complete(copy, jobs)
    assert (copy / "logs" / "webui.log").read_text().count("resumed (after a crash)") >= 1
    check_resumed_image(url, jobs, killed_at)

    # ./launch.sh drain with jobs running: it returns only when no call runs, and nothing starts
    # after; ./launch.sh restart --drain then re-does no work: the calls of the old process and
    # the new one made each image once (64 in all), and the queue goes on by itself. The second
    # call is held at its first step, so that the drain meets a running call on any machine.
    before = get_json(url + "healthz")["calls"]["images"]  # this process's, before these jobs
    (copy / "faults" / "hold").write_text("8")  # one call of 8 steps, then the next one holds
    ids = submit_four_users(url, "drain")
    wait_for(lambda: made_pngs(copy, ids) >= 4, 120, "the jobs to save their first images")
    drain = subprocess.Popen(["./launch.sh", "drain"], cwd=copy, env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: get_json(url + "healthz")["paused"] is not None, 30, "the server to see the pause")
        assert get_json(url + "healthz")["call_running"] and drain.poll() is None  # it waits for the call
    finally:
        (copy / "faults" / "hold").unlink()
    drained_out, _ = drain.communicate(timeout=120)
    assert drain.returncode == 0 and "Drained: no pipeline call runs" in drained_out, drained_out
    health = get_json(url + "healthz")
    assert health["paused"]["by"] == "the command line" and not health["call_running"], health
    time.sleep(2)
    assert get_json(url + "healthz")["calls"]["images"] == health["calls"]["images"]  # none started
    old_process = health["calls"]["images"] - before
    assert 0 < old_process < 64
    restarted = run(copy, env, "./launch.sh", "restart", "--drain")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "Resumed" in restarted.stdout
    jobs = wait_done(url, ids)
    check_complete(copy, jobs)
    assert old_process + get_json(url + "healthz")["calls"]["images"] == 64  # no image made twice

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


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_launch_runs_redis_the_web_and_workers_under_supervisor(
    project: tuple[Path, dict[str, str], str],
) -> None:
    """One box in distributed mode: `./launch.sh` starts Redis (password from the URL) and the
    web, `./launch.sh worker` two workers; a killed worker is restarted; stop leaves nothing."""
    copy, env, url = project
    password = "s3cret-for-the-test"
    env = {
        **env,
        "ZIMAGE_BROKER_URL": f"redis://:{password}@127.0.0.1:{free_port()}/0",
        "ZIMAGE_WORKERS": "2",
        "ZIMAGE_MODEL": "demo",
        "ZIMAGE_TASK_TIMEOUT": "10",
    }
    started = run(copy, env, "./launch.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "starting Redis on 127.0.0.1" in started.stdout
    assert oct((copy / "run" / "redis.conf").stat().st_mode & 0o777) == "0o600"
    workers = run(copy, env, "./launch.sh", "worker")
    assert workers.returncode == 0, workers.stdout + workers.stderr
    assert "2 GPU workers running" in workers.stdout

    def online() -> dict[str, dict]:
        return {w["name"].split("@")[0]: w for w in get_json(url + "healthz")["workers"]}

    wait_for(lambda: set(online()) == {"worker-0", "worker-1"}, 60, "two workers in /healthz")
    user = Client(url, verbose=False)
    job_id = user.predict(
        prompts="a teapot", seed=3, **{**SHOT, "width": 64, "height": 64}, api_name="/submit"
    )
    job_id = job_id["id"]
    wait_for(lambda: user.predict(job_id, api_name="/job")["status"] == "done", 120, "the job")

    # kill -9 of a worker: Supervisor starts a fresh one, which comes back online.
    victim = online()["worker-0"]["pid"]
    os.kill(victim, 9)
    wait_for(lambda: online().get("worker-0", {}).get("pid") not in (None, victim), 90, "worker-0 back")

    # Redis runs with a password, bound to loopback only, and stops with the rest.
    port = int(env["ZIMAGE_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
    listening = [c for c in psutil.net_connections("inet") if c.laddr.port == port and c.status == "LISTEN"]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    [server] = [psutil.Process(c.pid) for c in listening]
    assert server.name() == "redis-server"
    stopped = run(copy, env, "./launch.sh", "stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: not processes_of(copy) and not server.is_running(), 30, "every process to end")
