"""The HTTP APIs on a real server with per-person logins and API keys (made with the real
command lines): REST jobs, server-sent events, PNG URLs, Stop, limits, OpenAI's images route
through the official `openai` package, keys refused, failed logins slowed, the README's
examples as written."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AuthenticationError, BadRequestError, OpenAI
from PIL import Image

from tests.attacker import Tab
from tests.helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PROJECT,
    Server,
    readme_code_blocks,
    running_server,
    wait_for,
)
from tests.test_loras import make_lora
from webui.loading import LoadedModel

SMALL = {"width": 256, "height": 256, "steps": 2}
LONG = {"width": 1024, "height": 1024, "images_per_prompt": 8}  # seconds of work on the demo model


def cli(module: str, *args: str, state: Path, password: str | None = None) -> subprocess.CompletedProcess:
    """`python -m webui.users|webui.keys ...` as an admin types it (a password on standard input)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--state-dir", str(state)],
        cwd=PROJECT,
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_people_command_line_adds_lists_and_removes_with_clear_refusals(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert cli("webui.users", "add", "erin", state=state, password="erin's long password").returncode == 0
    again = cli("webui.users", "add", "erin", state=state, password="another long password")
    assert again.returncode == 2 and "erin exists already" in again.stderr
    short = cli("webui.users", "add", "fred", state=state, password="short")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    odd = cli("webui.users", "add", "../root", state=state, password="a long password")
    assert odd.returncode == 2 and "cannot be a user name" in odd.stderr
    assert cli("webui.users", "list", state=state).stdout.split() == ["erin"]
    assert cli("webui.users", "remove", "erin", state=state).returncode == 0
    assert cli("webui.users", "remove", "erin", state=state).returncode == 1
    assert cli("webui.users", "list", state=state).stdout == ""
    assert cli("webui.keys", "revoke", "zit_nothing", state=state).returncode == 1


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[dict[str, Any]]:
    """A server with three people (dana an admin) and a key each; one job runs at a time."""
    work = tmp_path_factory.mktemp("api")
    state = work / "state"
    for name, admin in (("alice", False), ("bob", False), ("dana", True)):
        added = cli(
            "webui.users",
            "add",
            name,
            *(["--admin"] if admin else []),
            state=state,
            password=f"{name}-password",
        )
        assert added.returncode == 0, added.stderr
    keys = {}
    for name in ("alice", "bob", "dana"):
        made = cli("webui.keys", "add", name, state=state)
        assert made.returncode == 0 and made.stdout.startswith("zit_"), made.stderr
        keys[name] = made.stdout.strip()
    listed = cli("webui.users", "list", state=state).stdout
    assert listed.split() == ["alice", "bob", "dana", "admin"]
    assert (state / "users.json").stat().st_mode & 0o777 == 0o600
    assert "alice-password" not in (state / "users.json").read_text()
    assert keys["alice"] not in (state / "keys.json").read_text()  # only its hash is kept
    options = {"cross_batching": "false", "queue_size": "2", "max_jobs_per_user": "2"}
    # Anyone's upload request: at most 16 MB; an admin's LoRA file: up to 20 MB.
    options |= {"max_input_request_mb": "5", "max_lora_mb": "20"}
    with running_server(work, cache_dir, **options) as server:
        yield {"server": server, "state": state, "keys": keys}


def call(server: Server, method: str, path: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path.lstrip("/"), data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            kind = response.headers.get("Content-Type", "")
            return response.status, json.loads(raw) if "json" in kind else raw
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def events(server: Server, job_id: str, key: str) -> list[tuple[str, dict]]:
    """The job's event stream, read to its end."""
    request = urllib.request.Request(
        f"{server.url}api/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {key}"}
    )
    found, kind = [], None
    with urllib.request.urlopen(request, timeout=120) as stream:
        for line in stream:
            text = line.decode().strip()
            if text.startswith("event: "):
                kind = text.removeprefix("event: ")
            elif text.startswith("data: "):
                found.append((kind, json.loads(text.removeprefix("data: "))))
    return found


def test_the_rest_flow_submit_follow_fetch_and_stop_another(team: dict[str, Any]) -> None:
    server, alice = team["server"], team["keys"]["alice"]
    status, job = call(
        server,
        "POST",
        "/api/v1/jobs",
        alice,
        {"prompts": "a {red|navy} mug", "width": 512, "height": 512, "seed": 5},
    )
    assert status == 202 and job["status"] in ("queued", "running") and job["owner"] == "alice", job
    stream = events(server, job["id"], alice)
    assert stream[-1][0] == "end" and all(kind == "progress" for kind, _ in stream[:-1])
    assert any(e["progress"]["step"] for _, e in stream[:-1])  # per-step progress came through
    done = stream[-1][1]
    assert done["status"] == "done" and [i["prompt"] for i in done["images"]] == ["a red mug", "a navy mug"]
    assert [i["seed"] for i in done["images"]] == [5, 6]
    with urllib.request.urlopen(done["images"][1]["url"], timeout=30) as png:  # signed: no key needed
        assert Image.open(io.BytesIO(png.read())).size == (512, 512)
    tampered = done["images"][1]["url"].replace("/images/1.png", "/images/0.png")
    with pytest.raises(urllib.error.HTTPError, match="403"):  # a signature, not this image's
        urllib.request.urlopen(tampered, timeout=30)
    assert call(server, "GET", f"/api/v1/jobs/{job['id']}", alice)[1]["status"] == "done"
    # Stop another job: it ends stopped, what was finished kept; it is in the person's listing.
    status, other = call(server, "POST", "/api/v1/jobs", alice, {"prompts": ["a long one"], **LONG})
    wait_for(
        lambda: call(server, "GET", f"/api/v1/jobs/{other['id']}", alice)[1]["status"] == "running",
        60,
        "it to run",
    )
    assert call(server, "DELETE", f"/api/v1/jobs/{other['id']}", alice)[0] == 200
    wait_for(
        lambda: call(server, "GET", f"/api/v1/jobs/{other['id']}", alice)[1]["status"] == "stopped",
        60,
        "stopped",
    )
    mine = call(server, "GET", "/api/v1/jobs", alice)[1]
    assert [j["id"] for j in mine[:2]] == [other["id"], job["id"]] and {j["owner"] for j in mine} == {"alice"}


def test_an_embedded_server_lists_its_one_model_and_refuses_another_naming_it(team: dict[str, Any]) -> None:
    server, alice = team["server"], team["keys"]["alice"]
    status, models = call(server, "GET", "/api/v1/models", alice)
    assert status == 200 and models == [
        {
            "name": "demo model",
            "default": True,
            "family": "turbo",
            "steps": 8,
            "guidance_scale": 0.0,
            "negative_prompt": False,
        }
    ]
    status, refused = call(
        server, "POST", "/api/v1/jobs", alice, {"prompts": "x", "model": "demo model (base)"}
    )
    assert status == 400
    assert refused["error"]["message"] == (
        "Model 'demo model (base)' is not served here. Models you can name: demo model."
    ), refused
    status, job = call(
        server, "POST", "/api/v1/jobs", alice, {"prompts": "x", "model": "demo model", **SMALL}
    )
    assert status == 202 and job["model"] == "demo model", job
    # OpenAI's model names mean this server's model.
    status, made = openai_call(server, alice, {"prompt": "x", "model": "gpt-image-1", "size": "64x64"})
    assert status == 200 and len(made["data"]) == 1
    assert call(server, "GET", "/api/v1/models", None)[0] == 401  # behind the login like the rest


def test_bad_inputs_name_the_limit_and_full_queues_answer_429(team: dict[str, Any]) -> None:
    server, keys = team["server"], team["keys"]
    status, error = call(server, "POST", "/api/v1/jobs", keys["bob"], {"prompts": "a mug", "width": 250})
    assert (
        status == 400
        and error["error"]["message"] == "Width must be a multiple of 16 (got 250; try 240 or 256)."
    )
    status, error = call(
        server, "POST", "/api/v1/jobs", keys["bob"], {"prompts": "a mug", "images_per_prompt": 999}
    )
    assert (
        status == 400
        and "Images per prompt must be a whole number from 1 to 200" in error["error"]["message"]
    )
    status, error = call(server, "POST", "/api/v1/jobs", keys["bob"], {"prompt": "a mug"})
    assert status == 422 and "prompts: Field required" in error["error"]["message"]
    # One job runs at a time; the queue holds 2 waiting, a person 2 jobs.
    first = call(server, "POST", "/api/v1/jobs", keys["alice"], {"prompts": "one", **LONG})[1]
    second = call(server, "POST", "/api/v1/jobs", keys["alice"], {"prompts": "two", **LONG})[1]
    status, error = call(server, "POST", "/api/v1/jobs", keys["alice"], {"prompts": "three", **LONG})
    assert (
        status == 429
        and error["error"]["code"] == "per_person_cap"
        and "MAX_JOBS_PER_USER=2" in error["error"]["message"]
    )
    third = call(server, "POST", "/api/v1/jobs", keys["bob"], {"prompts": "bob's", **LONG})[1]
    status, error = call(server, "POST", "/api/v1/jobs", keys["dana"], {"prompts": "dana's", **LONG})
    assert status == 429 and error["error"]["code"] == "queue_full", error
    # Only the owner or an admin stops a job.
    status, error = call(server, "DELETE", f"/api/v1/jobs/{third['id']}", keys["alice"])
    assert status == 403 and error["error"]["message"] == f"Job {third['id']} is not yours to stop."
    for job in (third, second, first):
        assert call(server, "DELETE", f"/api/v1/jobs/{job['id']}", keys["dana"])[0] == 200  # dana: admin
    for job in (first, second, third):
        wait_for(
            lambda job=job: (
                call(server, "GET", f"/api/v1/jobs/{job['id']}", keys["dana"])[1]["status"] == "stopped"
            ),
            60,
            "stopped",
        )


def test_keys_are_needed_and_a_revoked_one_is_refused(team: dict[str, Any]) -> None:
    server, state = team["server"], team["state"]
    body = {"prompts": "a mug", **SMALL}
    for key in (None, "zit_not-a-key"):
        status, error = call(server, "POST", "/api/v1/jobs", key, body)
        assert status == 401 and "Authorization: Bearer KEY" in error["error"]["message"]
    assert call(server, "GET", "/api/v1/loras")[0] == 401  # the new routes too
    edits = httpx.post(
        server.url + "v1/images/edits", data={"prompt": "x"}, files={"image": b"x"}, timeout=30
    )
    assert edits.status_code == 401 and edits.json()["error"]["type"] == "authentication_error"
    carol = cli("webui.keys", "add", "carol", state=state).stdout.strip()
    status, job = call(server, "POST", "/api/v1/jobs", carol, body)
    assert status == 202 and job["owner"] == "carol"
    [listed] = [
        line for line in cli("webui.keys", "list", state=state).stdout.splitlines() if " carol " in line
    ]
    key_id = listed.split()[0]
    assert carol.startswith(key_id) and cli("webui.keys", "revoke", key_id, state=state).returncode == 0
    assert call(server, "GET", f"/api/v1/jobs/{job['id']}", carol)[0] == 401  # the server reads the change
    assert call(server, "GET", "/api/v1/openapi.json")[1]["info"]["title"] == "Z-Image-Turbo WebUI"
    status, page = call(server, "GET", "/api/v1/docs")
    assert status == 200 and b"swagger-ui" in page and b"cdn" not in page.lower()


def test_the_openai_package_generates_images_here(team: dict[str, Any]) -> None:
    server, key = team["server"], team["keys"]["bob"]
    client = OpenAI(base_url=server.url + "v1", api_key=key)
    result = client.images.generate(
        model="z-image-turbo", prompt="a red sneaker", n=2, size="256x256", extra_body={"seed": 9, "steps": 2}
    )
    pictures = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert [p.size for p in pictures] == [(256, 256)] * 2 and pictures[0].tobytes() != pictures[1].tobytes()
    linked = client.images.generate(
        model="z-image-turbo",
        prompt="a navy mug",
        size="256x256",
        response_format="url",
        extra_body={"steps": 2},
    )
    [image] = linked.data
    with urllib.request.urlopen(image.url, timeout=30) as png:
        assert Image.open(io.BytesIO(png.read())).size == (256, 256)
    listing = call(server, "GET", "/api/v1/jobs", key)[1]
    assert [j["images"][0]["prompt"] for j in listing[:2]] == [
        "a navy mug",
        "a red sneaker",
    ]  # jobs like any other
    with pytest.raises(BadRequestError, match="Width must be a multiple of 16"):
        client.images.generate(model="z-image-turbo", prompt="x", size="250x256")
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.url + "v1", api_key="zit_wrong").images.generate(
            model="m", prompt="x", size="256x256"
        )


def test_the_readme_api_examples_run_as_written(team: dict[str, Any], tmp_path: Path) -> None:
    server, key = team["server"], team["keys"]["dana"]
    env = {**os.environ, "WEBUI_URL": server.url.rstrip("/"), "WEBUI_KEY": key}
    [shell] = [b for b in readme_code_blocks("bash") if "/api/v1/jobs" in b]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "event: end" in done.stdout and '"status": "done"' in done.stdout
    [python] = [b for b in readme_code_blocks("python") if "OpenAI(" in b]
    done = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    made = ["sneaker-0.png", "sneaker-1.png", "sneaker-mask.png", "sneaker-on-a-beach.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == made


def test_each_person_logs_in_to_the_page_and_history_shows_their_jobs_as_mine(team: dict[str, Any]) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium (./launch.sh test installs it)")
    from playwright.sync_api import expect, sync_playwright

    server, keys = team["server"], team["keys"]
    for name in ("alice", "bob"):
        job = call(server, "POST", "/api/v1/jobs", keys[name], {"prompts": f"{name}'s lamp", **SMALL})[1]
        assert events(server, job["id"], keys[name])[-1][1]["status"] == "done"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in ("alice", "bob"):
                page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
                page.goto(server.url)
                page.get_by_label("username").fill(name)
                page.get_by_label("password").fill(f"{name}-password")
                page.get_by_role("button", name="Login").click()
                expect(page.locator("#prompts textarea")).to_be_visible(timeout=60_000)
                expect(page.locator("#signed-in")).to_contain_text(f"Signed in as {name}")
                expect(page.locator("#lora-upload")).to_be_hidden()  # for admins only
                page.get_by_role("tab", name="History").click()
                table = page.locator("#history-table")
                expect(table).to_contain_text("alice's lamp")  # everyone's, first
                expect(table).to_contain_text("bob's lamp")
                page.locator("#history-scope").get_by_label("Mine").check()
                other = "bob" if name == "alice" else "alice"
                expect(table).not_to_contain_text(f"{other}'s lamp", timeout=30_000)  # refreshed under load
                expect(table).to_contain_text(f"{name}'s lamp")
                rows = table.get_by_role("row")
                owners = {
                    rows.nth(n).get_by_role("gridcell").nth(5).inner_text() for n in range(1, rows.count())
                }
                assert owners == {name}, owners
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"history-mine-{name}.png"), full_page=True)
                page.context.close()
        finally:
            browser.close()


def test_unknown_jobs_images_and_routes_answer_404_in_the_error_shape(team: dict[str, Any]) -> None:
    server, alice = team["server"], team["keys"]["alice"]
    for method, path in (
        ("GET", "/api/v1/jobs/nosuchjob"),
        ("GET", "/api/v1/jobs/nosuchjob/events"),
        ("DELETE", "/api/v1/jobs/nosuchjob"),
        ("GET", "/api/v1/jobs/nosuchjob/images/0.png"),
    ):
        status, error = call(server, method, path, alice)
        assert status == 404 and "nosuchjob" in error["error"]["message"], (path, error)
        assert set(error["error"]) == {"message", "code"}
    status, job = call(server, "POST", "/api/v1/jobs", alice, {"prompts": "a mug", **SMALL})
    wait_for(
        lambda: call(server, "GET", f"/api/v1/jobs/{job['id']}", alice)[1]["status"] == "done", 120, "done"
    )
    assert call(server, "GET", f"/api/v1/jobs/{job['id']}/images/0.png", alice)[0] == 200
    status, error = call(server, "GET", f"/api/v1/jobs/{job['id']}/images/7.png", alice)
    assert status == 404 and set(error["error"]) == {"message", "code"}, error
    status, error = call(server, "GET", "/api/v1/no-such-route", alice)
    assert status == 404 and set(error["error"]) == {"message", "code"}, error


def openai_call(server: Server, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return call(server, "POST", "/v1/images/generations", key, body)


def test_openai_route_errors_come_in_openais_shape_429_for_a_cap_409_for_a_stop(team: dict[str, Any]) -> None:
    server, keys = team["server"], team["keys"]
    shape = {"message", "type", "param", "code"}
    # 429: bob already has two jobs queued or running, the most one person may have.
    held = [
        call(server, "POST", "/api/v1/jobs", keys["bob"], {"prompts": f"held {n}", **LONG})[1] for n in (1, 2)
    ]
    status, error = openai_call(server, keys["bob"], {"prompt": "a mug", "size": "256x256"})
    assert status == 429 and set(error["error"]) == shape, error
    assert error["error"]["type"] == "rate_limit_error" and "MAX_JOBS_PER_USER=2" in error["error"]["message"]
    for job in held:
        assert call(server, "DELETE", f"/api/v1/jobs/{job['id']}", keys["bob"])[0] == 200
    wait_for(
        lambda: call(server, "GET", "/api/v1/jobs", keys["bob"])[1][0]["status"] == "stopped", 60, "stopped"
    )
    # 409: the job an OpenAI request made is stopped before any image was made.
    answers: list[tuple[int, dict[str, Any]]] = []
    before = {job["id"] for job in call(server, "GET", "/api/v1/jobs", keys["alice"])[1]}
    body = {"prompt": "stopped before its first image", "n": 8, "size": "1024x1024"}
    asking = threading.Thread(target=lambda: answers.append(openai_call(server, keys["alice"], body)))
    asking.start()

    def its_job() -> list[str]:
        return [
            j["id"] for j in call(server, "GET", "/api/v1/jobs", keys["alice"])[1] if j["id"] not in before
        ]

    wait_for(lambda: its_job() != [], 30, "the request's job")
    [job_id] = its_job()
    assert call(server, "DELETE", f"/api/v1/jobs/{job_id}", keys["alice"])[0] == 200
    asking.join(60)
    [(status, error)] = answers
    assert status == 409 and set(error["error"]) == shape, error
    assert error["error"]["type"] == "invalid_request_error" and job_id in error["error"]["message"]


def test_a_person_and_a_key_added_while_the_server_runs_work_at_once(team: dict[str, Any]) -> None:
    server, state = team["server"], team["state"]
    assert "frank" not in cli("webui.users", "list", state=state).stdout.split()
    assert cli("webui.users", "add", "frank", state=state, password="frank-password").returncode == 0
    key = cli("webui.keys", "add", "frank", state=state).stdout.strip()
    with httpx.Client(base_url=server.url, timeout=30) as page:
        assert (
            page.post("/login", data={"username": "frank", "password": "frank-password"}).status_code == 200
        )
        assert page.get("/config").status_code == 200  # signed in, no restart
        status, jobs = call(server, "GET", "/api/v1/jobs", key)
        assert status == 200 and jobs == []  # his own jobs: none yet
        assert cli("webui.users", "remove", "frank", state=state).returncode == 0
        wait_for(lambda: call(server, "GET", "/api/v1/jobs", key)[0] == 401, 10, "his key to be refused")
        wait_for(lambda: page.get("/config").status_code == 401, 10, "his session to end")


def test_an_admin_adds_a_lora_file_from_the_page_and_no_one_else_can(
    team: dict[str, Any], demo_model: LoadedModel, tmp_path: Path
) -> None:
    """Through the page's own protocol (upload, then the event): the file lands in the library
    checked; a person who is not an admin has no button, no event and no large upload."""
    server, keys = team["server"], team["keys"]
    made = make_lora(demo_model, tmp_path, "brand-look", 5).read_bytes()
    big = b"\0" * 17_000_000  # over anyone's upload limit, under an admin's
    alice, dana = Tab(server.url), Tab(server.url)
    assert alice.login("alice", "alice-password") == 200 and dana.login("dana", "dana-password") == 200
    add = dana.event("add_lora")
    assert alice.http.post("/gradio_api/upload", files={"files": ("big.safetensors", big)}).status_code == 413
    refused = alice.call(add, [file_data(alice.upload("brand-look.safetensors", made))])
    assert refused.error == "Only admins can do this."
    assert dana.call(add, [file_data(dana.upload("brand-look.safetensors", made))]).error is None
    status, listed = call(server, "GET", "/api/v1/loras", keys["alice"])
    assert status == 200 and [e["name"] for e in listed] == ["brand-look"]
    assert listed[0]["sha256"] == hashlib.sha256(made).hexdigest()
    again = dana.call(add, [file_data(dana.upload("brand-look.safetensors", made))])
    assert again.error and "A LoRA named 'brand-look' is in the library already" in again.error
    junk = dana.call(add, [file_data(dana.upload("junk.safetensors", big))])  # an admin's may be large
    assert junk.error == "LoRA 'junk' is not a safetensors file that can be read."
    named = dana.call(add, [file_data(dana.upload("-look.safetensors", made))])
    assert named.error and named.error.startswith("'-look.safetensors' is not a LoRA file name: use letters")
    assert [p.name for p in (server.output_dir.parent / "loras").iterdir()] == ["brand-look.safetensors"]


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_failed_logins_are_logged_without_the_password_and_slowed_per_address(team: dict[str, Any]) -> None:
    # Last in this module: it locks this address out of logging in for a while.
    server = team["server"]

    def login(name: str, password: str) -> int:
        body = urllib.parse.urlencode({"username": name, "password": password}).encode()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(server.url + "login", data=body), timeout=30
            ) as r:
                return r.status
        except urllib.error.HTTPError as error:
            return error.code

    assert login("alice", "alice-password") == 200
    assert [login("alice", f"guess {n}") for n in range(5)] == [400] * 5
    assert login("alice", "alice-password") == 429  # even the right one, for a while
    log = server.log_text()
    assert "Failed login for 'alice' from 127.0.0.1" in log and "guess 1" not in log
    assert "Login refused for 127.0.0.1" in log
