"""Start-up recovery: jobs taken up where they stopped; a job that keeps killing the server fails."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.request
from pathlib import Path

import httpx
from gradio_client import Client
from PIL import Image

from tests.attacker import Tab
from tests.helpers import Server, get_json, spawn_server, wait_for, wait_until_up
from webui.engine import Engine
from webui.jobs.record import QUEUED, RUNNING, SAVED, JobRecord
from webui.jobs.recovery import recover
from webui.jobs.store import JobStore
from webui.outputs import save_png, write_manifest
from webui.request import GenerationRequest

SMALL = {"width": 32, "height": 32, "steps": 1}


def accepted(engine: Engine, store: JobStore, images: int = 4) -> JobRecord:
    """A job planned and stored as the service accepts it."""
    record = JobRecord.plan(
        GenerationRequest(["a red mug"], images_per_prompt=images, seed=50, **SMALL),
        output_root=engine.settings.output_dir,
        model=engine.model.label,
        demo=True,
    )
    write_manifest(record.manifest_path, record.to_record())
    store.add(record)
    return record


def test_recovery_counts_saved_files_drops_partial_ones_and_tells_crashes_from_shutdowns(
    engine: Engine, settings
) -> None:
    store = JobStore(settings.state_path)
    crashed, interrupted, waiting = (accepted(engine, store) for _ in range(3))
    for record in (crashed, interrupted):
        for image in record.images[:2]:  # two PNGs written, the database not told yet
            save_png(Image.new("RGB", (32, 32), "red"), record.folder, image.file.removesuffix(".png"), {})
        record.started = record.created
    crashed.status, interrupted.status = RUNNING, QUEUED  # died while running / put down on SIGTERM
    store.save(crashed)
    store.save(interrupted)
    (crashed.folder / ".003_a-red-mug_s52.abc.tmp").write_bytes(b"half a png")

    ready = recover(store, max_resumes=settings.crash_resumes)
    assert [r.id for r in ready] == [crashed.id, interrupted.id, waiting.id]  # their order
    first, second, third = ready
    assert [i.state for i in first.images] == [SAVED, SAVED, "planned", "planned"]
    assert not list(crashed.folder.glob("*.tmp"))
    assert (first.resumed, first.crash_resumes, second.resumed, second.crash_resumes) == (1, 1, 1, 0)
    assert (third.resumed, third.status) == (0, QUEUED)  # never started: not a resume
    again = store.get(crashed.id)
    assert again is not None and again.status == QUEUED and again.crash_resumes == 1


def test_a_job_that_died_running_after_its_last_resume_fails_and_keeps_its_images(
    engine: Engine, settings
) -> None:
    store = JobStore(settings.state_path)
    record = accepted(engine, store)
    record.status, record.started, record.crash_resumes = RUNNING, record.created, settings.crash_resumes
    store.save(record)
    assert recover(store, max_resumes=settings.crash_resumes) == []
    failed = store.get(record.id)
    assert failed is not None and failed.status == "failed"
    assert f"the server went down {settings.crash_resumes + 1} times while this job ran" in (
        failed.error or ""
    )


def test_a_poison_job_fails_after_its_resumes_and_the_next_job_completes(
    tmp_path: Path, cache_dir: Path
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "crash").write_text("48")  # any forward of a 48-pixel-wide image kills the process
    # Two resumes, not the default three: the same path, one process start less per resume.
    options = {"module": "tests.faults", "env": {"WEBUI_FAULTS": str(faults)}, "crash_resumes": "2"}

    started: list[Server] = []  # every process this test starts is gone when it ends

    def start(log_name: str) -> Server:
        started.append(spawn_server(tmp_path, cache_dir, log_name=log_name, **options))
        return started[-1]

    try:
        server = start("server-0.log")
        wait_until_up(server)
        user = Client(server.url, verbose=False)
        (faults / "hang").write_text("")  # hold the first call until both jobs are in
        common = {"images_per_prompt": 2, "seed": 1, "height": 32, "steps": 2, "guidance_scale": 0.0}
        poison = user.predict(prompts="poison", width=48, **common, api_name="/submit")["id"]
        healthy = user.predict(prompts="healthy", width=32, **common, api_name="/submit")["id"]
        (faults / "hang").unlink()
        assert server.process.wait(60) == -9  # killed by its first call

        # As Supervisor would: start it again, and again. Each start takes the poison job up
        # first, alone, and dies in its call, until the job has been resumed twice.
        for n in range(1, 3):
            server = start(f"server-{n}.log")
            assert server.process.wait(120) == -9, server.log_text()
            assert f"job {poison} resumed (after a crash)" in server.log_text()
            assert f"request {healthy}" not in server.log_text()  # it waits: the suspect runs alone

        server = start("server-3.log")
        wait_until_up(server)
        user = Client(server.url, verbose=False)
        failed = user.predict(poison, api_name="/job")
        assert (
            failed["status"] == "failed"
            and "Not resumed again: the server went down 3 times" in failed["error"]
        )
        assert user.predict(healthy, api_name="/job")["status"] in ("queued", "running", "done")
        wait_for(lambda: user.predict(healthy, api_name="/job")["status"] == "done", 60, "the healthy job")
        done = user.predict(healthy, api_name="/job")
        assert done["status"] == "done" and len(done["images"]) == 2
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                server.process.wait(30)


def test_a_product_job_resumes_with_its_inputs_after_a_restart_and_a_kill(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Stopped (SIGTERM) then killed (SIGKILL) mid-job, each time after some images: the next
    start finds the inputs by hash and makes only the images still missing, each once."""
    faults = tmp_path / "faults"
    faults.mkdir()
    options = {"module": "tests.faults", "env": {"WEBUI_FAULTS": str(faults)}, "max_batch_size": "2"}
    cut = Image.new("RGBA", (40, 60), (0, 0, 0, 0))
    cut.paste(Image.new("RGBA", (20, 36), (180, 40, 40, 255)), (10, 12))
    buffer = io.BytesIO()
    cut.save(buffer, "PNG")
    body = {
        "prompts": ["on a beach", "on snow"],
        "images_per_prompt": 2,
        "seed": 3,
        "kind": "product",
        "images": [{"data": base64.b64encode(buffer.getvalue()).decode(), "name": n} for n in ("mug", "jug")],
        "width": 48,
        "height": 48,
        "steps": 2,
    }
    started: list[Server] = []

    def start(n: int) -> Server:
        started.append(spawn_server(tmp_path, cache_dir, log_name=f"server-{n}.log", **options))
        wait_until_up(started[-1])
        return started[-1]

    def job(server: Server, job_id: str) -> dict:
        return get_json(f"{server.url}api/v1/jobs/{job_id}")

    try:
        (faults / "hold").write_text("2")  # one call of 2 images (2 steps), then the next call holds
        server = start(0)
        request = urllib.request.Request(
            server.url + "api/v1/jobs", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            job_id = json.loads(answer.read())["id"]
        wait_for(lambda: job(server, job_id)["progress"]["images_done"] == 2, 60, "the first call's images")
        server.process.terminate()  # as supervisorctl restart does
        (faults / "hold").unlink()
        assert server.process.wait(60) in (0, -15)  # stopped, not killed
        (faults / "hold").write_text("2")
        server = start(1)
        wait_for(lambda: job(server, job_id)["progress"]["images_done"] == 4, 60, "the next call's images")
        server.process.kill()  # kill -9, mid-call
        server.process.wait(30)
        (faults / "hold").unlink()
        server = start(2)
        wait_for(lambda: job(server, job_id)["status"] == "done", 90, "the job to finish")
        logs = [s.log_text() for s in started]
        assert f"request {job_id}: 2 prompts x 2, 6 of 8 images to make" in logs[1]
        assert f"request {job_id}: 2 prompts x 2, 4 of 8 images to make" in logs[2]
        done = job(server, job_id)
        assert [i["input"] for i in done["images"]] == ["mug"] * 4 + ["jug"] * 4
        files = sorted(p.name for p in server.output_dir.rglob("[0-9]*.png"))
        assert len(files) == len(set(files)) == 8  # every planned image, each once
    finally:
        (faults / "hold").unlink(missing_ok=True)
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                server.process.wait(30)


# The Generate form of a text job (32x32, 8 steps), as the page sends it.
TEXT_FORM = ["a red mug", 2, 7, 32, 32, 8, 0, "", "", "per-image", "text", 0.6, 0.6, "center", ""]
TEXT_FORM += [None, "auto", None, None, *["", 1.0] * 4]


def test_a_restart_tells_open_pages_and_waits_for_none_of_their_streams(
    tmp_path: Path, cache_dir: Path
) -> None:
    """SIGTERM with a page following its running job and streams open (Gradio's heartbeat, the
    REST events): the page is told the server restarts, the streams end properly, and uvicorn's
    graceful shutdown ends without running into its timeout (10 s, then a traceback)."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "hold").write_text("1")  # the job's call makes one step, then waits: running at the signal
    server = spawn_server(tmp_path, cache_dir, module="tests.faults", env={"WEBUI_FAULTS": str(faults)})
    ended: dict[str, object] = {}
    connected: set[str] = set()

    def read_to_the_end(name: str, path: str) -> None:
        lines = []
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client, client.stream("GET", path) as got:
                for line in got.iter_lines():
                    connected.add(name)
                    lines.append(line)
            ended[name] = lines
        except httpx.HTTPError as exc:  # cut off rather than ended
            ended[name] = exc

    try:
        wait_until_up(server)
        tab = Tab(server.url)
        page = threading.Thread(target=lambda: ended.update(page=tab.call(tab.event("generate"), TEXT_FORM)))
        page.start()
        wait_for(lambda: get_json(server.url + "healthz")["jobs_running"] == 1, 60, "the page's job to run")
        [job] = get_json(server.url + "api/v1/jobs")
        paths = {
            "heartbeat": f"/gradio_api/heartbeat/{tab.session}",
            "events": f"/api/v1/jobs/{job['id']}/events",
        }
        streams = [threading.Thread(target=read_to_the_end, args=item) for item in paths.items()]
        for thread in streams:
            thread.start()
        wait_for(lambda: connected == {"heartbeat", "events"}, 30, "the streams' first lines")
        server.process.terminate()  # as supervisorctl restart does
        (faults / "hold").unlink()
        assert server.process.wait(60) in (0, -15)
        for thread in (page, *streams):
            thread.join(30)
        assert "The server is restarting" in (ended["page"].error or ""), ended["page"]
        assert isinstance(ended["heartbeat"], list), ended["heartbeat"]
        assert isinstance(ended["events"], list) and "event: progress" in ended["events"], ended["events"]
        log = server.log_text()
        assert "Server stopped" in log
        assert "graceful shutdown exceeded" not in log and "ASGI callable returned" not in log, log[-2000:]
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)
