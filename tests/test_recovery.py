"""Start-up recovery: jobs taken up where they stopped; a job that keeps killing the server fails."""

from __future__ import annotations

from pathlib import Path

from gradio_client import Client
from PIL import Image

from tests.helpers import Server, spawn_server, wait_for, wait_until_up
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
        poison = user.predict(prompts="poison", width=48, **common, api_name="/submit")["job_id"]
        healthy = user.predict(prompts="healthy", width=32, **common, api_name="/submit")["job_id"]
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
        assert user.predict(healthy, api_name="/job")["status"] in ("waiting", "running", "done")
        wait_for(lambda: user.predict(healthy, api_name="/job")["status"] == "done", 60, "the healthy job")
        done = user.predict(healthy, api_name="/job")
        assert done["status"] == "done" and len(done["images"]) == 2
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                server.process.wait(30)
