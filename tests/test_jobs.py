"""The job service in-process: planning, packing policy, limits, order, Stop, views and shutdown."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator

import pytest

from tests.helpers import wait_for
from webui.engine import Engine
from webui.jobs.execute import write_starred
from webui.jobs.record import DONE, QUEUED, STOPPED, JobRecord
from webui.jobs.recovery import rebuild
from webui.jobs.runners import LocalRunner
from webui.jobs.service import JobService
from webui.jobs.store import JobStore
from webui.jobs.views import Identity
from webui.lane.packing import Waiting, next_call
from webui.loading import LoadedModel
from webui.outputs import read_manifest, read_png_parameters
from webui.request import GenerationRequest, RequestError
from webui.settings import SEED_PER_VARIANT

SMALL = {"width": 32, "height": 32, "steps": 2}
ALICE, BOB = Identity(user="alice"), Identity(user="bob")


def test_packing_takes_the_oldest_jobs_kind_and_one_image_from_each_such_job_in_turn() -> None:
    jobs = [Waiting("big", [1] * 6), Waiting("small", [1]), Waiting("big", [1, 1]), Waiting("big", [])]
    assert next_call(jobs, 4, cross_batching=True, one_bucket=False) == [(0, 0), (2, 0), (0, 1), (2, 1)]
    assert next_call(jobs, 3, cross_batching=False, one_bucket=False) == [(0, 0), (0, 1), (0, 2)]
    assert next_call(jobs[1:2], 4, cross_batching=True, one_bucket=False) == [(0, 0)]
    assert next_call([Waiting("big", [])], 4, cross_batching=True, one_bucket=False) == []


def test_packing_for_a_mask_free_backend_keeps_one_caption_bucket_per_call() -> None:
    jobs = [Waiting("k", [2, 3, 2]), Waiting("k", [3, 2])]
    assert next_call(jobs, 4, cross_batching=True, one_bucket=True) == [(0, 0), (1, 1), (0, 2)]
    assert next_call(jobs, 4, cross_batching=True, one_bucket=False) == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_a_plan_names_every_image_and_its_seed_before_any_work(settings) -> None:
    request = GenerationRequest(["a {red} mug", "a navy mug"], images_per_prompt=2, seed=40, **SMALL)
    record = JobRecord.plan(
        request, output_root=settings.output_dir, model="demo model", demo=True, owner="al"
    )
    assert [(i.index, i.prompt_index, i.variant, i.seed) for i in record.images] == [
        (0, 0, 0, 40),
        (1, 0, 1, 41),
        (2, 1, 0, 42),
        (3, 1, 1, 43),
    ]
    assert [i.file for i in record.images][:2] == ["001_a-red-mug_s40.png", "002_a-red-mug_s41.png"]
    assert record.folder.parent.parent == settings.output_dir.resolve() and record.id in record.folder.name
    variant = GenerationRequest(
        ["a", "b"], images_per_prompt=2, seed=7, seed_policy=SEED_PER_VARIANT, **SMALL
    )
    planned = JobRecord.plan(variant, output_root=settings.output_dir, model="m", demo=True)
    assert [i.seed for i in planned.images] == [7, 8, 7, 8]
    drawn = JobRecord.plan(
        GenerationRequest(["a"], seed=-1), output_root=settings.output_dir, model="m", demo=1
    )
    assert drawn.request.seed >= 0 and drawn.images[0].seed == drawn.request.seed  # the seed used is kept
    again = JobRecord.from_record(record.to_record(), record.folder)
    assert again.to_record() == record.to_record()


@pytest.fixture
def gpu_gate(demo_model: LoadedModel) -> Iterator[threading.Event]:
    """While the returned event is clear, every transformer forward waits: a busy GPU."""
    gate = threading.Event()

    def hold(module: object, args: object) -> None:  # a pre-hook's return value would replace args
        gate.wait(60)

    handle = demo_model.pipe.transformer.register_forward_pre_hook(hold)
    yield gate
    gate.set()
    handle.remove()


def service_on(engine: Engine) -> JobService:
    s = engine.settings
    service = JobService(JobStore(s.state_path), LocalRunner(engine), s, engine.validate, "demo model", True)
    service.start()
    return service


def test_limits_name_themselves_and_count_per_person(make_engine, gpu_gate: threading.Event) -> None:
    engine = make_engine(cross_batching=False, queue_size=3, max_jobs_per_user=2)  # one job runs at a time
    service = service_on(engine)
    job = GenerationRequest(["a red mug"], **SMALL)
    first = service.submit(job, ALICE)
    service.submit(job, ALICE)
    with pytest.raises(RequestError, match=r"You have 2 jobs queued or running.*ZIMAGE_MAX_JOBS_PER_USER=2"):
        service.submit(job, ALICE)
    service.submit(job, BOB)  # another person is not held by alice's cap
    service.submit(job, BOB)
    with pytest.raises(RequestError, match=r"The queue is full: 3 jobs are waiting.*ZIMAGE_QUEUE_SIZE=3"):
        service.submit(job, Identity(user="carol"))
    with pytest.raises(RequestError, match="Width must be a multiple of 16"):
        service.submit(GenerationRequest(["a"], width=40), Identity(user="carol"))
    assert service.counts() == (3, 1)
    views = service.views()
    assert [v.status for v in views] == ["running", "queued", "queued", "queued"]
    assert [(v.position, v.ahead) for v in views] == [(None, 0), (1, 1), (2, 2), (3, 3)]
    assert [v.owner for v in views] == ["alice", "alice", "bob", "bob"] and views[0].id == first.id
    gpu_gate.set()
    for view in views:
        assert service.wait(view.id, 60)
    assert service.counts() == (0, 0)
    assert all(service.record(v.id).status == DONE for v in views)


def test_stop_is_for_the_owner_a_waiting_job_ends_at_once_and_order_is_kept(
    make_engine, gpu_gate: threading.Event
) -> None:
    engine = make_engine(cross_batching=False)
    service = service_on(engine)
    running = service.submit(GenerationRequest(["running"], images_per_prompt=2, **SMALL), ALICE)
    waiting = service.submit(GenerationRequest(["waiting"], **SMALL), BOB)
    last = service.submit(GenerationRequest(["last"], **SMALL), ALICE)
    with pytest.raises(RequestError, match=f"Job {waiting.id} is not yours to stop"):
        service.stop(waiting.id, ALICE)
    assert service.stop(waiting.id, BOB)
    stopped = service.record(waiting.id)
    assert (
        stopped.status == STOPPED
        and stopped.saved == []
        and read_manifest(stopped.folder)["status"] == "stopped"
    )
    assert [v.id for v in service.views()] == [running.id, last.id]
    assert service.view(last.id).describe().startswith("1 job ahead of yours")
    gpu_gate.set()
    assert service.wait(last.id, 60)
    assert service.record(running.id).finished < service.record(last.id).finished  # in order
    assert not service.stop(last.id, ALICE)  # ended already


def test_views_give_an_eta_from_the_measured_speed_once_there_is_one(make_engine, gpu_gate) -> None:
    engine = make_engine(cross_batching=False)
    service = service_on(engine)
    gpu_gate.set()
    first = service.submit(GenerationRequest(["warm-up"], images_per_prompt=2, **SMALL), ALICE)
    assert service.wait(first.id, 60)
    gpu_gate.clear()
    held = service.submit(GenerationRequest(["held"], images_per_prompt=4, **SMALL), ALICE)
    behind = service.submit(GenerationRequest(["behind"], images_per_prompt=4, **SMALL), BOB)
    view = service.view(behind.id)
    assert view.eta_start_s is not None and view.eta_start_s > 0 and view.eta_done_s > view.eta_start_s
    assert view.describe().startswith("1 job ahead of yours, about ")
    gpu_gate.set()
    assert service.wait(held.id, 60) and service.wait(behind.id, 60)


def test_closing_puts_running_jobs_back_to_wait_with_their_finished_images(
    make_engine, demo_model: LoadedModel
) -> None:
    engine = make_engine(cross_batching=False, max_batch_size=2)
    service = service_on(engine)
    # The first call (two images, SMALL's steps) runs; the second waits in its first step
    # until the service is closed, so the job cannot finish first however fast the machine.
    forwards, release = 0, threading.Event()

    def hold_the_second_call(module: object, args: object) -> None:
        nonlocal forwards
        forwards += 1
        if forwards > SMALL["steps"]:
            release.wait(60)

    handle = demo_model.pipe.transformer.register_forward_pre_hook(hold_the_second_call)
    try:
        record = service.submit(GenerationRequest(["a red mug"], images_per_prompt=6, seed=3, **SMALL), ALICE)
        wait_for(lambda: len(record.saved) >= 2, 60, "the first call's images")
        service.close()
        release.set()
        service.join(30)
    finally:
        release.set()
        handle.remove()
    again = service.store.get(record.id)
    assert again is not None and again.status == QUEUED  # not stopped: the next start resumes it
    assert 2 <= len(again.saved) < 6 and read_manifest(record.folder)["status"] == "queued"
    assert sorted(p.name for p in record.folder.glob("0*.png")) == sorted(i.file for i in again.saved)
    assert all(read_png_parameters(record.path_of(i))["request_id"] == record.id for i in again.saved)
    assert not list(record.folder.glob(".*.tmp"))
    with pytest.raises(RequestError, match="The server is restarting"):
        service.submit(GenerationRequest(["late"], **SMALL), ALICE)


def test_stars_are_kept_with_the_job_in_the_database_and_its_manifest(make_engine, tmp_path) -> None:
    engine = make_engine()
    service = service_on(engine)
    record = service.submit(
        GenerationRequest(["a red mug", "a navy mug"], images_per_prompt=2, **SMALL), ALICE
    )
    assert service.wait(record.id, 60)
    service.star(record.id, 1, True)
    service.star(record.id, 2, True)
    service.star(record.id, 3, True)
    service.star(record.id, 3, False)  # taken back
    with pytest.raises(RequestError, match="No image 9"):
        service.star(record.id, 9, True)
    # What a restarted server reads: the database, or the manifests when it rebuilds History.
    again = JobStore(engine.settings.state_path).get(record.id)
    assert again is not None and [i.index for i in again.starred] == [1, 2]
    rebuilt = JobStore(tmp_path / "new-state")
    assert rebuild(rebuilt, engine.settings.output_dir) >= 1
    assert [i.index for i in rebuilt.get(record.id).starred] == [1, 2]
    zipped = write_starred(again)
    assert zipped is not None and sorted(zipfile.ZipFile(zipped).namelist()) == [
        again.images[1].file,
        again.images[2].file,
    ]
