"""Faults inside the real server's pipeline calls (`python -m tests.faults`), met over HTTP.

The server's transformer gets the faults of tests/faults.py, armed by files in a folder the
test owns. The tests run in file order on one server; the last one makes it exit.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.helpers import Server, arm, get_json, server_with_faults, wait_for

STALL_TIMEOUT_S = 10  # the server's ZIMAGE_STALL_TIMEOUT; its grace period after a stall is as long
SMALL = dict(images_per_prompt=1, seed=5, width=32, height=32, steps=2, guidance_scale=0.0)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, faults: Path) -> Iterator[Server]:
    # Calls of at most 2 images, so 4 jobs running at once (LocalRunner.capacity).
    with server_with_faults(
        tmp_path_factory.mktemp("faults-server"),
        cache_dir,
        faults,
        max_batch_size="2",
        queue_size="3",
        stall_timeout=str(STALL_TIMEOUT_S),
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def disarmed(faults: Path) -> Iterator[None]:
    yield
    for armed in faults.iterdir():
        armed.unlink()


def client(server: Server) -> Client:
    return Client(server.url, verbose=False)


def health(server: Server) -> tuple[int, dict]:
    """/healthz's HTTP status and body, for any status."""
    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def jobs_in_service(server: Server) -> int:
    """Jobs accepted and not ended: waiting or running."""
    health = get_json(server.url + "healthz")
    return health["jobs_queued"] + health["jobs_running"]


def generate(user: Client, prompt: str, **overrides) -> tuple:
    return user.predict(prompts=prompt, **{**SMALL, **overrides}, api_name="/generate")


def test_an_exception_in_a_call_fails_its_request_with_a_message_and_the_next_queued_one_runs(
    server: Server, faults: Path
) -> None:
    first, second = client(server), client(server)
    arm(faults, "hang")  # hold the first request's call, so the second is surely behind it
    failing = first.submit(prompts="a red sneaker", **SMALL, api_name="/generate")
    wait_for(lambda: get_json(server.url + "healthz")["call_quiet_s"] > 0, 30, "the call to start")
    queued = second.submit(prompts="a navy mug", **{**SMALL, "width": 64}, api_name="/generate")
    wait_for(lambda: jobs_in_service(server) == 2, 30, "the second job to wait")
    arm(faults, "raise")
    (faults / "hang").unlink()  # the held forward goes on and raises

    with pytest.raises(
        AppError, match=r"Generation failed: RuntimeError: injected fault in the transformer\."
    ):
        failing.result(timeout=60)
    gallery, summary, details, _, _ = queued.result(timeout=60)
    assert len(gallery) == 1 and "1 image in" in summary and Path(details[0]["file"]).is_file()
    log = server.log_text()
    assert "Traceback" in log and "RuntimeError: injected fault in the transformer" in log


def test_out_of_memory_in_a_served_call_retries_smaller_or_says_what_to_lower(
    server: Server, faults: Path
) -> None:
    user = client(server)
    arm(faults, "oom", "1")  # a forward of two images fails, one image fits
    gallery, _, details, _, _ = generate(user, "a red sneaker", images_per_prompt=2)
    assert len(gallery) == 2 and [d["seed"] for d in details] == [5, 6]
    assert "Out of memory in a call of 2 images; retrying in calls of at most 1" in server.log_text()

    arm(faults, "oom", "0")  # nothing fits
    with pytest.raises(
        AppError, match=r"Out of memory even for one 32x32 image .* lower ZIMAGE_MAX_BATCH_SIZE"
    ):
        generate(user, "a navy mug")
    (faults / "oom").unlink()
    assert len(generate(user, "a navy mug")[0]) == 1


def test_an_image_that_comes_out_nan_is_not_saved_and_the_user_is_told(server: Server, faults: Path) -> None:
    arm(faults, "nan")  # the next decode: on the CPU, images are decoded one at a time
    gallery, summary, details, _, _ = generate(client(server), "a red sneaker", images_per_prompt=2)
    assert "1 image came out black and was not saved (seed 5)" in summary
    assert [d["seed"] for d in details] == [6] and len(gallery) == 1
    assert [p.name for p in Path(details[0]["file"]).parent.glob("*.png")] == [Path(details[0]["file"]).name]


def test_queue_limit_n_with_n_plus_one_submissions_at_once_the_extra_one_is_told_busy(
    server: Server, faults: Path
) -> None:
    arm(faults, "slow", "1.5")  # a slow GPU: steps finish, just late (3 s a call, under the stall timeout)
    users = [client(server) for _ in range(4 + 3 + 1)]
    running = [
        user.submit(prompts=f"running {n}", **SMALL, api_name="/generate") for n, user in enumerate(users[:4])
    ]
    # Calls of at most 2 images: the lane takes 4 jobs at once (LocalRunner.capacity).
    wait_for(lambda: get_json(server.url + "healthz")["jobs_running"] == 4, 60, "four jobs running")

    def submit(n: int) -> str:
        try:
            generate(users[4 + n], f"queued {n}")
            return "served"
        except AppError as error:
            message = str(error)
            assert "The queue is full: 3 jobs are waiting" in message and "ZIMAGE_QUEUE_SIZE=3" in message
            return "busy"

    with ThreadPoolExecutor(4) as pool:  # queue size N = 3: N + 1 at once
        answers = pool.map(submit, range(4))
        wait_for(lambda: jobs_in_service(server) == 4 + 3, 30, "three jobs queued behind the four")
        (faults / "slow").unlink()
        outcome = sorted(answers)
    assert outcome == ["busy", "served", "served", "served"]
    assert all(len(job.result(timeout=60)[0]) == 1 for job in running)


def test_a_call_that_stalls_fails_with_a_message_healthz_says_so_and_recovery_resumes(
    server: Server, faults: Path
) -> None:
    arm(faults, "hang")
    started = time.monotonic()
    job = client(server).submit(prompts="a red sneaker", **SMALL, api_name="/generate")
    with pytest.raises(AppError, match=rf"Stopped: the GPU made no progress for {STALL_TIMEOUT_S} s"):
        job.result(timeout=60)
    assert time.monotonic() - started >= STALL_TIMEOUT_S
    status, body = health(server)
    assert status == 503 and body["status"] == "stalled" and body["call_quiet_s"] >= STALL_TIMEOUT_S
    with pytest.raises(AppError, match="The GPU stopped making progress"):  # no new work meanwhile
        generate(client(server), "a navy mug")

    (faults / "hang").unlink()  # the device comes back within the grace period
    wait_for(lambda: health(server)[1]["status"] == "ok", 30, "the server to serve again")
    assert health(server)[0] == 200
    assert "The stalled call came back after all; serving again" in server.log_text()
    assert len(generate(client(server), "a navy mug")[0]) == 1
    assert server.process.poll() is None


def test_an_openai_request_whose_job_failed_before_any_image_gets_500_in_openais_shape(
    server: Server, faults: Path
) -> None:
    arm(faults, "raise")  # the request's one call raises
    answer = httpx.post(
        server.url + "v1/images/generations", json={"prompt": "a red sneaker", "size": "64x64"}, timeout=60
    )
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "server_error"
    assert "Generation failed: RuntimeError: injected fault in the transformer" in error["message"]


def test_a_call_that_stays_stuck_makes_the_process_exit_for_supervisor_to_restart(
    server: Server, faults: Path
) -> None:
    # Last in this module: the server exits.
    arm(faults, "hang")
    job = client(server).submit(prompts="a red sneaker", **SMALL, api_name="/generate")
    with pytest.raises(AppError, match="Stopped: the GPU made no progress"):
        job.result(timeout=60)
    assert health(server)[1]["status"] == "stalled"
    assert server.process.wait(timeout=STALL_TIMEOUT_S + 30) == 70
    log = server.log_text()
    assert f"still stuck {STALL_TIMEOUT_S} s later" in log and "Exiting with status 70" in log
    assert not any(p.name.endswith(".tmp") for p in server.output_dir.rglob("*"))
