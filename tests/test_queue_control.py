"""Running the queue: pause and resume, moving a job, for admins only; on the real lane in this
process, and over REST on a running server (a restart while paused stays paused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    ARTIFACTS,
    Server,
    chromium,
    free_port,
    held,
    running_server,
    server_with_faults,
    wait_for,
)
from tests.test_api import cli
from tests.test_jobs import ALICE, BOB, SMALL, service_on
from tests.test_jobs import gpu_gate as gpu_gate  # a fixture, used by name
from webui.jobs.control import QueueControl
from webui.jobs.record import DONE
from webui.jobs.views import Identity
from webui.request import GenerationRequest, RequestError

ADMIN = Identity(user="dana", admin=True)
QUIET_S = 3  # how long "no new call starts" is watched
IDLE_MEASURED_S = 10


def test_pause_lets_the_running_call_end_starts_no_other_and_resume_goes_on(
    make_engine, gpu_gate: threading.Event
) -> None:
    engine = make_engine(max_batch_size=2, cross_batching=False)  # one job at a time, calls of 2
    service = service_on(engine)
    first = service.submit(GenerationRequest(["a mug"], images_per_prompt=6, **SMALL), ALICE)  # 3 calls
    wait_for(lambda: engine.lane.call_running, 30, "the first call")
    with pytest.raises(RequestError, match="Only admins can do this"):
        service.pause(ALICE)
    service.pause(ADMIN)
    gpu_gate.set()  # the running call finishes
    wait_for(lambda: not engine.lane.call_running, 30, "the running call to end")
    second = service.submit(GenerationRequest(["a lamp"], **SMALL), BOB)
    calls = engine.lane.calls_started
    time.sleep(QUIET_S)
    assert engine.lane.calls_started == calls == 1  # nothing new started while paused
    assert service.record(first.id).done_count == 2 and service.view(second.id).status == "queued"
    paused = QueueControl(engine.settings.state_path).paused()  # as a restart would read it
    assert paused is not None and paused.by == "dana"
    service.resume(ADMIN)
    for job in (first, second):
        assert service.wait(job.id, 60)
        assert service.record(job.id).status == DONE
    assert QueueControl(engine.settings.state_path).paused() is None


def test_a_job_moved_to_the_front_makes_its_images_first(make_engine, gpu_gate: threading.Event) -> None:
    """Three jobs wait behind a running one; the third is moved to the front, the first down:
    the PNGs are written in the new order. With cross-user batching the lane holds waiting jobs
    too, so both the queue and the lane follow."""
    engine = make_engine(max_batch_size=1)
    service = service_on(engine)
    running = service.submit(GenerationRequest(["running"], **SMALL), ALICE)
    wait_for(lambda: engine.lane.call_running, 30, "the first call")
    a, b, c = (service.submit(GenerationRequest([name], **SMALL), BOB) for name in ("a", "b", "c"))
    with pytest.raises(RequestError, match="Only admins can do this"):
        service.move(c.id, "front", BOB)
    with pytest.raises(RequestError, match="A job moves to the front, up or down"):
        service.move(c.id, "sideways", ADMIN)
    service.move(c.id, "front", ADMIN)
    service.move(a.id, "down", ADMIN)
    assert [v.id for v in service.views()] == [c.id, running.id, b.id, a.id]
    gpu_gate.set()
    for job in (running, a, b, c):
        assert service.wait(job.id, 60)
    ended = [service.record(job.id) for job in (a, b, c)]  # each one call of one image
    assert [job.id for job in sorted(ended, key=lambda job: job.started)] == [c.id, b.id, a.id]


def test_rest_controls_for_admins_only_and_a_restart_while_paused_stays_paused(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path
) -> None:
    work = tmp_path_factory.mktemp("queue-control")
    state = work / "state"
    keys = {}
    for name, admin in (("dana", True), ("alice", False)):
        assert (
            cli("webui.users", "add", name, *["--admin"] * admin, state=state, password="pw-" * 4).returncode
            == 0
        )
        keys[name] = cli("webui.keys", "add", name, state=state).stdout.strip()
    key = keys["dana"]
    port = free_port()
    with running_server(work, cache_dir, metrics_port=str(port)) as server:
        with pytest.raises(urllib.error.HTTPError, match="401"):
            scrape(server.url + "metrics")  # behind the login: a person's key
        assert scrape(server.url + "metrics", keys["alice"])["zimage_queue_paused{}"] == 0
        assert "zimage_jobs{status=queued}" in scrape(f"http://127.0.0.1:{port}/metrics")  # its own port
        assert _call(server.url, "POST", "queue/pause")[0] == 401
        for path, body in (("queue/pause", None), ("queue/resume", None), ("jobs/x/move", {"to": "up"})):
            status, refused = _call(server.url, "POST", path, keys["alice"], body)
            assert status == 403 and refused["error"]["message"] == "Only admins can do this.", (
                path,
                refused,
            )
        assert _call(server.url, "GET", "queue", keys["alice"])[1]["paused"] is None  # anyone may look
        status, queue = _call(server.url, "POST", "queue/pause", key)
        assert status == 200 and queue["paused"]["by"] == "dana", queue
        assert scrape(server.url + "metrics", key)["zimage_queue_paused{}"] == 1
        status, job = _call(server.url, "POST", "jobs", key, {"prompts": ["a mug"], **SMALL})
        assert status == 202
    with running_server(work, cache_dir) as server:
        health = json.load(urllib.request.urlopen(server.url + "healthz", timeout=30))
        assert health["paused"]["by"] == "dana" and health["jobs_queued"] == 1
        # The command line, from the server's folder (docs/operations.md), says as much.
        port = urllib.parse.urlsplit(server.url).port
        env = {**os.environ, "ZIMAGE_STATE_DIR": str(state), "ZIMAGE_PORT": str(port)}
        command = [sys.executable, "-m", "webui.queue", "status"]
        said = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert said.returncode == 0 and said.stdout.startswith("Paused by dana since"), said.stdout
        assert '"jobs_queued": 1' in said.stdout
        time.sleep(QUIET_S)
        assert _call(server.url, "GET", f"jobs/{job['id']}", key)[1]["status"] == "queued"
        status, moved = _call(server.url, "POST", f"jobs/{job['id']}/move", key, {"to": "front"})
        assert status == 200 and moved["order"] == [job["id"]]
        assert _call(server.url, "POST", f"jobs/{job['id']}/move", key, {"to": "back"})[0] == 422
        assert _call(server.url, "POST", "queue/resume", key)[1]["paused"] is None
        wait_for(
            lambda: _call(server.url, "GET", f"jobs/{job['id']}", key)[1]["status"] == "done", 60, "done"
        )
        schema = json.load(urllib.request.urlopen(server.url + "api/v1/openapi.json", timeout=30))
        assert {"/queue", "/queue/pause", "/queue/resume", "/jobs/{job_id}/move"} <= set(schema["paths"])
        _page_controls(server.url)


def _page_controls(url: str) -> None:
    """In Chromium: an admin's Queue panel pauses and resumes, and says who paused it; a person
    who is not an admin sees no controls."""
    from playwright.sync_api import expect

    with chromium() as browser:
        for name in ("dana", "alice"):
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.goto(url)
            page.get_by_label("username").fill(name)
            page.get_by_label("password").fill("pw-" * 4)
            page.get_by_role("button", name="Login").click()
            expect(page.locator("#prompts textarea")).to_be_visible(timeout=60_000)
            if name == "alice":
                expect(page.locator("#queue-table")).to_be_visible()
                expect(page.locator("#queue-controls")).to_be_hidden()
                continue
            page.locator("#queue-pause").click()
            expect(page.locator("#queue-state")).to_contain_text("Paused by dana since", timeout=10_000)
            assert json.load(urllib.request.urlopen(url + "healthz", timeout=30))["paused"]["by"] == "dana"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "queue-paused-admin.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.locator("#queue-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "queue-paused-admin-phone.png"))
            page.locator("#queue-resume").click()
            expect(page.locator("#queue-state")).not_to_contain_text("Paused", timeout=10_000)
            page.context.close()


def _call(url: str, method: str, path: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}api/v1/{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


def scrape(url: str, key: str | None = None) -> dict[str, float]:
    """GET a /metrics, parsed with prometheus-client's own parser: sample name{labels} -> value."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def test_the_queue_command_answers_at_once_without_loading_torch() -> None:
    # `./launch.sh drain` pauses within a second: importing torch first took 4-7 s on 2 cores,
    # long enough for a short queue to run out before the pause.
    loaded = "[m for m in ('torch', 'diffusers', 'gradio') if m in sys.modules]"
    heavy = f"import sys, webui.queue; print({loaded})"
    said = subprocess.run([sys.executable, "-c", heavy], capture_output=True, text=True, timeout=60)
    assert said.returncode == 0 and said.stdout.strip() == "[]", said.stdout + said.stderr


def test_metrics_have_the_series_and_move_after_a_job(shared_server: Server) -> None:
    url = shared_server.url + "metrics"
    before = scrape(url)
    for series in (
        "zimage_jobs{status=queued}",
        "zimage_jobs{status=done}",
        "zimage_queue_depth{}",
        "zimage_queue_oldest_wait_seconds{}",
        "zimage_queue_paused{}",
        "zimage_images_total{}",
        "zimage_failed_logins_total{}",
    ):
        assert series in before, series
    status, job = _call(
        shared_server.url, "POST", "jobs", None, {"prompts": ["a mug"], "images_per_prompt": 2, **SMALL}
    )
    assert status == 202
    path = f"jobs/{job['id']}"
    wait_for(lambda: _call(shared_server.url, "GET", path)[1]["status"] == "done", 60, "the job done")
    after = scrape(url)
    assert after["zimage_images_total{}"] >= before["zimage_images_total{}"] + 2
    calls = "zimage_pipeline_call_seconds_count{kind=text,size=32x32}"
    assert after[calls] >= before.get(calls, 0) + 1
    assert after["zimage_images_per_call_sum{}"] >= before.get("zimage_images_per_call_sum{}", 0) + 2
    assert after["zimage_jobs{status=done}"] == before["zimage_jobs{status=done}"] + 1
    posted = "zimage_api_requests_total{code=202,route=/api/v1/jobs}"
    assert after[posted] == before.get(posted, 0) + 1
    assert after["zimage_api_requests_total{code=200,route=/api/v1/jobs/{id}}"] >= 1


def test_ten_open_pages_cost_an_idle_server_little_and_see_a_change_at_once(shared_server: Server) -> None:
    """Ten pages open in Chromium on an idle server: its CPU time over 10 s is measured (and
    reported, not asserted); then a job submitted over REST shows in every page's Queue panel,
    pushed (no timer), and how long that took is reported too."""
    import psutil

    server = shared_server  # idle while this test runs: a test file's tests run one at a time
    with chromium() as browser:
        from playwright.sync_api import expect

        pages = [browser.new_context().new_page() for _ in range(10)]
        for page in pages:
            page.goto(server.url)
            expect(page.locator("#queue-table")).to_be_visible(timeout=60_000)
        time.sleep(3)  # the pages' start-up events are done
        process = psutil.Process(server.process.pid)
        before, started = process.cpu_times(), time.monotonic()
        time.sleep(IDLE_MEASURED_S)
        after, elapsed = process.cpu_times(), time.monotonic() - started
        busy = (after.user + after.system) - (before.user + before.system)
        idle_share = busy / elapsed
        body = {"prompts": ["a pushed lamp"], "width": 64, "height": 64}
        seen = []
        with held(server.faults, 0):  # the job stays in the Queue panel until every page is looked at
            sent = time.monotonic()
            status, job = _call(server.url, "POST", "jobs", None, body)
            assert status == 202
            for page in pages:
                expect(page.locator("#queue-table")).to_contain_text("a pushed lamp", timeout=10_000)
                seen.append(time.monotonic() - sent)
        ended = lambda: _call(server.url, "GET", f"jobs/{job['id']}")[1]["status"] == "done"  # noqa: E731
        wait_for(ended, 60, "the job to end")
        figures = {
            "pages": len(pages),
            "idle_cpu_share_of_one_core": round(idle_share, 4),
            "idle_seconds_measured": round(elapsed, 1),
            "change_seen_by_all_pages_s": round(max(seen), 2),
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "idle-pages.json").write_text(json.dumps(figures, indent=2))
        print(figures)


def test_an_open_pages_queue_panel_stays_live_while_its_timer_renews_the_stream(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A page's Queue panel is a stream that ends after a while and is renewed by a timer (here
    6 s streams that look at the queue each second): over three renewals, a job submitted every
    2 s shows in the open page within 3 s (the first, once the page's first stream runs). The
    timer's tick that came while the last stream was still ending was dropped before: the
    panel then stood still until the tick after."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "panel_stream").write_text("6 1")
    with (
        server_with_faults(tmp_path, cache_dir, faults, max_jobs_per_user="20") as server,
        chromium() as browser,
    ):
        from playwright.sync_api import expect

        page = browser.new_context().new_page()
        page.goto(server.url)
        expect(page.locator("#queue-table")).to_be_visible(timeout=60_000)
        with held(faults, 0):  # the jobs stay in the panel
            for n in range(10):
                sent = time.monotonic()
                body = {"prompts": [f"live lamp {n}"], "width": 64, "height": 64}
                assert _call(server.url, "POST", "jobs", None, body)[0] == 202
                # The first waits for the page's first stream however busy the machine is.
                seen_within_s = 30 if n == 0 else 3
                expect(page.locator("#queue-table")).to_contain_text(
                    f"live lamp {n}", timeout=seen_within_s * 1000
                )
                time.sleep(max(0.0, 2 - (time.monotonic() - sent)))
