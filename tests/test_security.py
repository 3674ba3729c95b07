"""The server tried as an attacker would: no file, key or account within reach of anyone but
its owner. Against real servers: the shared one (no login) and one with a login on (two people
with API keys, a small queue, a short cache age and link lifetime).

The walk over the page's events (`test_no_event_hands_out_a_planted_file`) is the probe that
found the file-read hole and the browser id echo; it runs on every change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.attacker import PYTHON_WORDING, Tab, event_data, file_data, huge_png, linked_files, payloads
from tests.helpers import PROJECT, Server, running_server, wait_for
from webui.access import FAILED_LOGIN_WINDOW_S, MAX_FAILED_LOGINS, Access
from webui.keys import Keys
from webui.outputs import PARAMETERS_KEY
from webui.settings import Settings
from webui.users import Users

PASSWORDS = {"alice": "alice-long-passphrase", "bob": "bob-long-passphrase", "carol": "carol-long-passphrase"}
LINK_LIFETIME_S = 6  # the login server's signed URLs

# The rest of a Generate event's values: kind, strength, product size, position, model (the
# server's), the images section (files, cut-out, painted photo, reused images) and four LoRA
# rows (name, strength), none of them used.
IMAGES_OFF = ["text", 0.6, 0.6, "center", "", None, "auto", None, None, *["", 1.0] * 4]


@dataclass
class Site:
    """A running server as the attacks see it."""

    server: Server
    state: Path
    keys: dict[str, str]  # person -> API key (with a login on)
    secret: Path  # a planted file in the state folder
    marker: str  # its content

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def login_on(self) -> bool:
        return bool(self.keys)

    def tab(self, person: str = "bob", **client) -> Tab:
        tab = Tab(self.url, **client)
        if self.login_on:
            assert tab.login(person, PASSWORDS[person]) == 200
        return tab

    def api(self, person: str = "bob") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[person]}"} if self.login_on else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def plant(state: Path) -> tuple[Path, str]:
    marker = f"planted-secret-{uuid.uuid4().hex}"
    state.mkdir(parents=True, exist_ok=True)
    secret = state / "planted-secret.txt"
    secret.write_text(marker)
    return secret, marker


@pytest.fixture(scope="module")
def open_site(shared_server: Server) -> Site:
    state = shared_server.output_dir.parent / "state"
    return Site(shared_server, state, {}, *plant(state))


@pytest.fixture(scope="module")
def login_site(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("login")
    state = work / "state"
    users = Users(state)
    users.add("alice", PASSWORDS["alice"], admin=True)
    users.add("bob", PASSWORDS["bob"])
    users.add("carol", PASSWORDS["carol"])
    keys = {name: Keys(state).add(name) for name in PASSWORDS}
    secret = plant(state)
    options = {
        "queue_size": "3",
        "max_jobs_per_user": "40",  # the queue's limit, not a person's, is what a burst meets
        "cache_max_age": "4",
        "url_expiry_days": str(LINK_LIFETIME_S / 86400),
        "trusted_proxies": "127.0.0.2",
    }
    env = {"GRADIO_TEMP_DIR": str(work / "gradio")}
    with running_server(work, cache_dir, env=env, **options) as server:
        yield Site(server, state, keys, *secret)


@pytest.fixture(params=["login off", "login on"])
def site(request: pytest.FixtureRequest) -> Site:
    return request.getfixturevalue("open_site" if request.param == "login off" else "login_site")


def make_job(site: Site, **request) -> dict:
    """A small job through the REST API, waited for."""
    api = site.api()
    body = {"prompts": "a red mug", "width": 64, "height": 64, "steps": 2, **request}
    job = api.post("/api/v1/jobs", json=body).json()
    wait_for(lambda: api.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "done", 60, "the job")
    return api.get(f"/api/v1/jobs/{job['id']}").json()


def assert_plain_words(text: str | None) -> None:
    assert not any(words in (text or "") for words in PYTHON_WORDING), text


# 1. No path from the browser is ever opened.


def test_no_event_hands_out_a_planted_file(site: Site) -> None:
    tab = site.tab()
    events = tab.events()
    assert len(events) > 25  # the whole page, not a part of it
    # A job of this tab's in its grid: the image actions then have something to act on.
    generate = tab.event("generate")
    made = tab.call(generate, ["a red mug", 1, 1, 64, 64, 2, 0, "", "", "per-image", *IMAGES_OFF])
    assert made.completed["success"], made.text
    secrets = [str(site.secret), str(site.state / "users.json"), "/etc/passwd"]
    for secret in secrets:
        for name, payload in payloads(secret).items():
            for dependency in events * 2:  # twice: what one event kept, the next could use
                answer = tab.call(dependency, [payload] * len(dependency["inputs"]), event_data(secret))
                where = f"{dependency.get('api_name')} with {name} {secret}"
                assert answer.status < 500, where
                assert site.marker not in answer.text and "scrypt$" not in answer.text, where
                assert_plain_words(answer.error)
                for url in linked_files([m.get("output") for m in answer.messages]):
                    assert secret not in urllib.parse.unquote(url), where
                    content = tab.http.get(url).content
                    assert site.marker.encode() not in content and b"root:" not in content, where


def test_load_prompts_reads_only_what_this_page_uploaded(site: Site) -> None:
    mine, other = site.tab("bob"), site.tab("alice")
    uploaded = mine.upload("prompts.txt", b"a red mug\na navy mug\n")
    load = mine.event("load_prompts")
    read = mine.call(load, [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": "p.txt"}])
    assert read.completed["output"]["data"] == ["a red mug\na navy mug\n"]
    # Another page (another browser; with a login, another person) naming that upload.
    refused = other.call(
        load, [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": "p.txt"}]
    )
    assert refused.status == 400 and "not uploaded from this page" in refused.text
    # Any other file, as a FileData or bare, is refused unread.
    for value in (
        {"path": str(site.secret), "meta": {"_type": "gradio.FileData"}},
        {"path": str(site.secret)},
    ):
        refused = mine.call(load, [value])
        assert refused.status == 400 and site.marker not in refused.text


def test_gradios_routes_refuse_files_not_uploaded_and_crafted_bodies(site: Site) -> None:
    tab = site.tab()
    foreign = file_data(str(site.secret))
    load = tab.event("load_prompts")
    join = {"data": [foreign], "fn_index": load["id"], "session_hash": tab.session}
    component = {"data": foreign, "component_id": 1, "fn_name": "x", "session_hash": tab.session}
    for route, body in (("/gradio_api/queue/join", join), ("/gradio_api/component_server", component)):
        answer = tab.http.post(route, json=body)
        assert answer.status_code == 400 and "not uploaded from this page" in answer.text, route
    # Too deep to walk is refused too (Python's JSON reader stops at about 1000 levels).
    deep = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert tab.http.post("/gradio_api/queue/join", content=deep).status_code == 400
    # Closed: the route that replaces a queued event's inputs, and the curl-style routes (one
    # takes inputs as named fields; crafted calls to them ended in 500s and reset connections).
    closed = ["stream/x", "call/load_prompts", "call/v2/load_prompts", "run/load_prompts", "api/load_prompts"]
    for route in closed:
        answer = tab.http.post(f"/gradio_api/{route}", json={"data": [foreign], "file": foreign})
        assert answer.status_code == 404, route
    # Crafted bodies on the routes left open get 4xx, never 500.
    routes = ["queue/join", "cancel", "reset", "component_server", "upload", "run-history/connect"]
    for route in routes:
        for body in ({"data": [], "fn_index": 0, "session_hash": "x", "event_id": "x"}, {}, [1], "x", None):
            answer = tab.http.post(f"/gradio_api/{route}", json=body)
            assert answer.status_code < 500, (route, body, answer.text)


def test_the_browser_id_handed_back_on_load_is_one_the_server_made(site: Site) -> None:
    tab = site.tab()
    identify = tab.event("identify")
    kept = "0123456789abcdef" * 2
    assert tab.call(identify, [kept]).completed["output"]["data"] == [kept]
    for sent in (str(site.secret), {"value": str(site.secret)}, ["x"], "../../etc/passwd"):
        [made] = tab.call(identify, [sent]).completed["output"]["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", made) and made != kept


# 2. Logins.


def wrong_login(site: Site, source: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=site.url, transport=transport, timeout=60) as client:
        form = {"username": "bob", "password": "not the password"}
        return client.post("/login", data=form, headers=headers).status_code


def test_fifty_simultaneous_wrong_passwords_get_five_checks_and_the_rest_429(login_site: Site) -> None:
    start = threading.Barrier(50)

    def attempt(_: int) -> int:
        start.wait()
        return wrong_login(login_site, "127.0.0.4")

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(attempt, range(50)))
    assert codes.count(400) == 5 and codes.count(429) == 45, codes


def test_forwarded_addresses_count_only_from_a_listed_proxy(login_site: Site) -> None:
    # 127.0.0.3 is no listed proxy (loopback is not trusted by default): its header is ignored.
    codes = [wrong_login(login_site, "127.0.0.3", f"10.0.0.{i}") for i in range(6)]
    assert codes == [400] * 5 + [429]
    assert "Failed login for 'bob' from 127.0.0.3" in login_site.server.log_text()
    # 127.0.0.2 is listed: each forwarded address is limited on its own.
    assert [wrong_login(login_site, "127.0.0.2", f"10.1.0.{i}") for i in range(6)] == [400] * 6
    assert [wrong_login(login_site, "127.0.0.2", "198.51.100.7") for _ in range(6)] == [400] * 5 + [429]
    assert wrong_login(login_site, "127.0.0.2", "198.51.100.8") == 400


def test_removing_a_person_revokes_their_keys_and_ends_their_sessions(login_site: Site) -> None:
    page, api = login_site.tab("carol"), login_site.api("carol")
    assert page.http.get("/config").status_code == 200 and api.get("/api/v1/jobs").status_code == 200
    removed = cli("webui.users", "remove", "carol", state=login_site.state)
    assert removed.returncode == 0 and "revoked 1 API key" in removed.stdout
    wait_for(lambda: page.http.get("/config").status_code == 401, 5, "carol's session to end")
    assert api.get("/api/v1/jobs").status_code == 401
    assert page.http.post("/gradio_api/queue/join", json={"data": [], "session_hash": "x"}).status_code == 401
    kept = json.loads((login_site.state / "keys.json").read_text()).values()
    assert [r for r in kept if r["person"] == "carol"] == []


def cli(module: str, *args: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--state-dir", str(state)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_revoking_a_key_by_its_id_revokes_exactly_that_key(login_site: Site) -> None:
    keys = Keys(login_site.state)
    first, second = keys.add("bob"), keys.add("bob")

    def works(key: str) -> bool:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(login_site.url + "api/v1/jobs", headers=headers).status_code == 200

    assert works(first) and works(second)
    assert cli("webui.keys", "revoke", first[:12], state=login_site.state).returncode == 0
    assert not works(first) and works(second)
    # Two keys of an older version sharing an id: that id revokes neither; the key itself, one.
    third = keys.add("bob")
    records = json.loads((login_site.state / "keys.json").read_text())
    for record in records.values():
        if record["id"] == third[:12]:
            record["id"] = second[:12]
    (login_site.state / "keys.json").write_text(json.dumps(records))
    shared = cli("webui.keys", "revoke", second[:12], state=login_site.state)
    assert shared.returncode == 2 and "2 keys have the id" in shared.stderr
    assert works(second) and works(third)
    assert cli("webui.keys", "revoke", third, state=login_site.state).returncode == 0
    assert works(second) and not works(third)


# 3. Sizes before work.


def raw_request(site: Site, head: str, body_parts: list[bytes], pause: float = 0) -> bytes:
    """Send a request by hand (`body_parts` one by one, `pause` s apart, stopping if the server
    closes); what came back."""
    address = urllib.parse.urlsplit(site.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
                time.sleep(pause)
        except OSError:
            pass  # the server answered and closed before taking it all
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return received


# Asks /healthz every 10 ms until its stop file appears, then prints the latencies as JSON. It
# runs in a process of its own: in a thread of the test it would also time the test's own work
# (encoding a 3.9 MB request holds the test's interpreter), not only the server's.
HEALTHZ_PROBE = """
import json, pathlib, sys, time, httpx
url, stop = sys.argv[1], pathlib.Path(sys.argv[2])
latencies = []
with httpx.Client(base_url=url) as client:
    while not stop.exists() or len(latencies) < 3:
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        latencies.append(time.monotonic() - started)
        if len(latencies) == 1:
            print("ready", flush=True)
        time.sleep(0.01)
print(json.dumps(latencies))
"""


def assert_healthz_answers_meanwhile(site: Site, action, check) -> None:
    """/healthz, asked every 10 ms by another process while `action()` runs, answers each time
    within 100 ms; `check` asserts what the action got. Tried twice before it fails: a loop
    blocked by the action is blocked each time, while two loaded cores may stall one answer."""
    for _ in range(2):
        stop = site.state / f"probe-stop-{uuid.uuid4().hex}"
        probe = subprocess.Popen(
            [sys.executable, "-c", HEALTHZ_PROBE, site.url, str(stop)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert probe.stdout is not None and probe.stdout.readline() == "ready\n"
            check(action())
        finally:
            stop.touch()
            out, _ = probe.communicate(timeout=30)
        latencies = json.loads(out.splitlines()[-1])
        if max(latencies) < 0.1:
            return
    raise AssertionError(f"/healthz took {max(latencies):.3f} s to answer, twice: {latencies}")


def test_a_body_over_the_limit_gets_413_unread_and_big_prompts_never_block(open_site: Site) -> None:
    host = urllib.parse.urlsplit(open_site.url).netloc
    # Declared: refused after its headers, though only 64 KB of its 5 MB came.
    head = f"POST /v1/images/generations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    declared = raw_request(open_site, head + "Content-Length: 5000000\r\n\r\n", [b"x" * 65536])
    assert declared.startswith(b"HTTP/1.1 413")
    # A route that takes input images has a limit of its own (ZIMAGE_MAX_INPUT_REQUEST_MB, 100).
    jobs = head.replace("/v1/images/generations", "/api/v1/jobs")
    assert raw_request(open_site, jobs + "Content-Length: 200000000\r\n\r\n", [b"x"]).startswith(
        b"HTTP/1.1 413"
    )
    # Not declared (chunked): refused once past the limit; /healthz answers at once meanwhile.
    prompt = json.dumps({"prompts": "a" * 5_000_000}).encode()
    parts = [prompt[i : i + 65536] for i in range(0, len(prompt), 65536)]
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]
    chunked = (
        head.replace("/v1/images/generations", "/gradio_api/queue/join")
        + "Transfer-Encoding: chunked\r\n\r\n"
    )

    def refused_by_size(answer: bytes) -> None:
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    assert_healthz_answers_meanwhile(
        open_site, lambda: raw_request(open_site, chunked, chunks, 0.005), refused_by_size
    )
    # A small Content-Length beside chunked: the body is read chunked, and counted as it comes.
    both = chunked.replace("Transfer-Encoding", "Content-Length: 100\r\nTransfer-Encoding")
    assert raw_request(open_site, both, chunks).startswith(b"HTTP/1.1 413")
    # Just under the limit, a prompt box is refused by its length, off the event loop.
    box = "a red mug " * 390_000
    tab, api = open_site.tab(), open_site.api()

    def refused_by_length(answer: httpx.Response) -> None:
        assert answer.status_code == 400 and "The prompt box holds 3,900,000 characters" in answer.text

    assert_healthz_answers_meanwhile(
        open_site, lambda: api.post("/api/v1/jobs", json={"prompts": box}), refused_by_length
    )
    form = [box, 1, 1, 64, 64, 2, 0, "", "", "per-image", *IMAGES_OFF]

    def told_by_length(answer) -> None:
        assert "The prompt box holds 3,900,000 characters" in answer.error

    assert_healthz_answers_meanwhile(open_site, lambda: tab.call(tab.event("generate"), form), told_by_length)


def test_reusing_a_huge_png_reads_its_text_and_never_its_pixels(open_site: Site) -> None:
    parameters = {
        "prompt": "a red mug",
        "seed": 7,
        "width": 512,
        "height": 512,
        "steps": 8,
        "guidance_scale": 0,
    }
    png = huge_png(13000, 13000, {PARAMETERS_KEY: json.dumps(parameters)})  # 507 MB of pixels
    assert len(png) < 2_000_000
    tab = open_site.tab()
    uploaded = tab.upload("huge.png", png)
    status = Path(f"/proc/{open_site.server.process.pid}/status")
    Path(f"/proc/{open_site.server.process.pid}/clear_refs").write_text("5")  # peak memory from now

    def kilobytes(field: str) -> int:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read_text())[1])

    before = kilobytes("VmRSS")
    form = tab.call(tab.event("reuse_png"), [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}])
    assert form.completed["success"], form.text
    values = form.completed["output"]["data"]
    assert "a red mug" in values and 7 in values
    assert kilobytes("VmHWM") - before < 100_000  # decoding would take 507 MB


def test_uploads_are_deleted_once_older_than_the_cache_age(login_site: Site) -> None:
    uploaded = Path(login_site.tab().upload("old.txt", b"a red mug\n"))
    assert uploaded.is_file() and uploaded.is_relative_to(login_site.server.output_dir.parent / "gradio")
    wait_for(lambda: not uploaded.exists(), 20, "Gradio to delete the upload (ZIMAGE_CACHE_MAX_AGE=4)")


# 4. Crafted input gets 4xx, never 500, and no Python wording.


def test_crafted_api_input_gets_4xx_in_plain_words(site: Site) -> None:
    api = site.api()
    job = make_job(site)
    image = f"/api/v1/jobs/{job['id']}/images/0.png"
    refused = api.get(image, params={"sig": "é", "exp": "1"}, headers={"Authorization": ""})
    assert refused.status_code == (403 if site.login_on else 200)
    for query in ("?sig=%C3%A9", "?exp=%C2%B2&sig=x"):  # "²" is a digit to str.isdigit
        assert httpx.get(site.url + image.lstrip("/") + query).status_code == (403 if site.login_on else 200)
    nested = api.post("/api/v1/jobs", json={"prompts": "{" * 1000 + "a" + "}" * 1000})
    assert nested.status_code == 400 and "nest deeper than 8 levels" in nested.json()["error"]["message"]
    size = api.post("/v1/images/generations", json={"prompt": "a mug", "size": "9" * 5000 + "x64"})
    assert size.status_code == 400 and "size must be WIDTHxHEIGHT" in size.json()["error"]["message"]
    negative = api.post(
        "/api/v1/jobs", json={"prompts": "a mug", "negative_prompt": "blur\0ry", "guidance_scale": 0}
    )
    assert negative.status_code == 400
    assert "The negative prompt contains a control character" in negative.json()["error"]["message"]
    # The routes of LoRAs, models and the queue: a path for a name, a model, a move.
    lora = api.post("/api/v1/jobs", json={"prompts": "a mug", "loras": [{"name": "../../etc/passwd"}]})
    assert lora.status_code == 400 and "No LoRA named '../../etc/passwd'" in lora.json()["error"]["message"]
    model = api.post("/api/v1/jobs", json={"prompts": "a mug", "model": "/etc/passwd" * 50})
    assert model.status_code == 400 and "is not served here" in model.json()["error"]["message"]
    moves = [
        api.post("/api/v1/jobs/../x/move", json={"to": "front"}),
        api.post("/api/v1/jobs/x/move", content=b"{"),
    ]
    assert all(400 <= m.status_code < 500 for m in moves), [m.status_code for m in moves]
    assert api.post("/api/v1/queue/pause").status_code == 403  # no admin in these sites
    for answer in (nested, size, negative, lora, model, *moves):
        assert_plain_words(answer.text)
        assert "root:" not in answer.text


def test_crafted_page_input_gets_our_words(site: Site) -> None:
    tab = site.tab()
    generate = tab.event("generate")
    form = ["{" * 1000 + "a" + "}" * 1000, 1, 1, 64, 64, 2, 0, "", "", "per-image", *IMAGES_OFF]
    assert "nest deeper than 8 levels" in tab.call(generate, form).error
    form = ["a mug", 1, 1, 64, 64, 2, 0, "blur\0ry", "", "per-image", *IMAGES_OFF]
    assert "The negative prompt contains a control character" in tab.call(generate, form).error
    # Values of the wrong type: refused by Gradio's component (a bare "Error") or by us.
    form = ["a mug", {"a": 1}, "x", [], 64, 2, None, 5, 7, {"p": 1}]
    answer = tab.call(generate, form)
    assert answer.completed["success"] is False
    assert_plain_words(answer.error)
    # PNG metadata of the wrong types, and nested too deep to parse.
    reuse = tab.event("reuse_png")
    for metadata, says in (
        ({"prompt": ["a mug"], "seed": 1}, "prompt"),
        ({"prompt": "a mug", "seed": "7"}, "seed"),
        ({"prompt": "a mug", "seed": 1, "width": {"path": "/etc/passwd"}}, "width"),
        ([1, 2], "no Z-Image WebUI parameters"),
    ):
        upload = tab.upload("odd.png", huge_png(16, 16, {PARAMETERS_KEY: json.dumps(metadata)}))
        answer = tab.call(reuse, [{"path": upload, "meta": {"_type": "gradio.FileData"}}])
        assert says in answer.error, answer.text
        assert_plain_words(answer.error)
    deep = tab.upload("deep.png", huge_png(16, 16, {PARAMETERS_KEY: "[" * 100_000}))
    answer = tab.call(reuse, [{"path": deep, "meta": {"_type": "gradio.FileData"}}])
    assert "no Z-Image WebUI parameters" in answer.error


# 5. Host and headers.


def test_unknown_host_names_get_400_and_pages_refuse_frames(site: Site) -> None:
    assert httpx.get(site.url, headers={"Host": "rebound.attacker.example"}).status_code == 400
    own = httpx.get(site.url + "healthz", headers={"Host": f"{socket.gethostname()}:80"})
    assert own.status_code == 200
    for path in ("", "api/v1/docs", "healthz"):
        headers = httpx.get(site.url + path).headers
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_gradios_queue_and_cancel_routes_want_the_login(login_site: Site) -> None:
    anyone = httpx.Client(base_url=login_site.url)
    bob = login_site.tab()
    body = {"data": [], "fn_index": 0, "session_hash": "x", "event_id": "x"}
    for method, path in (
        ("POST", "/gradio_api/queue/join"),
        ("GET", "/gradio_api/queue/data?session_hash=x"),
        ("POST", "/gradio_api/cancel"),
        ("POST", "/gradio_api/reset"),
        ("GET", "/gradio_api/heartbeat/x"),
        ("POST", "/gradio_api/upload"),
        ("POST", "/gradio_api/component_server"),
        ("GET", "/config"),
    ):
        assert anyone.request(method, path, json=body).status_code == 401, path
        with bob.http.stream(method, path, json=body) as answer:  # the queue's stream stays open
            assert answer.status_code != 401, path
    # Nor does any event run without it.
    for dependency in bob.events():
        answer = Tab(login_site.url).call(dependency, [None] * len(dependency["inputs"]))
        assert answer.status == 401


# 6. Secrets and records.


def test_state_files_are_private(login_site: Site) -> None:
    make_job(login_site)
    names = [
        "jobs.sqlite3",
        "jobs.sqlite3-wal",
        "jobs.sqlite3-shm",
        "users.json",
        "keys.json",
        "url-key",
        "browser-key",
    ]
    modes = {name: stat.S_IMODE(os.stat(login_site.state / name).st_mode) for name in names}
    assert modes == dict.fromkeys(names, 0o600)


def test_signed_image_urls_expire_and_die_with_a_rotated_key(site: Site) -> None:
    job = make_job(site)
    url = job["images"][0]["url"]
    expires = int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["exp"][0])
    lifetime = LINK_LIFETIME_S if site.login_on else 7 * 86400  # the default: 7 days
    assert abs(expires - time.time() - lifetime) < 30
    assert httpx.get(url).status_code == 200  # without a key
    if not site.login_on:
        return  # without a login every image opens anyway
    wait_for(lambda: time.time() > expires + 1, LINK_LIFETIME_S + 5, "the link to expire")
    expired = httpx.get(url)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    fresh = site.api().get(f"/api/v1/jobs/{job['id']}").json()["images"][0]["url"]
    assert httpx.get(fresh).status_code == 200
    assert cli("webui.keys", "rotate-url-key", state=site.state).returncode == 0
    assert httpx.get(fresh).status_code == 403


# 7. Limits are exact under a burst.


def test_a_burst_of_forty_submissions_leaves_at_most_three_waiting(login_site: Site) -> None:
    start = threading.Barrier(40)
    body = {"prompts": "a slow mug", "images_per_prompt": 16, "width": 256, "height": 256, "steps": 50}

    def submit(_: int) -> httpx.Response:
        with login_site.api() as api:
            start.wait()
            return api.post("/api/v1/jobs", json=body)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(submit, range(40)))
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    try:
        refused = [a for a in answers if a.status_code != 202]
        health = httpx.get(login_site.url + "healthz").json()
        # As many running as the engine takes at once (their images share pipeline calls), 3 waiting.
        assert health["jobs_queued"] == 3 and len(accepted) == health["jobs_running"] + 3
        for answer in refused:
            assert answer.status_code == 429
            message = answer.json()["error"]["message"]
            assert message.startswith(
                "The queue is full: 3 jobs are waiting, the most it holds (ZIMAGE_QUEUE_SIZE=3)"
            )
    finally:
        with login_site.api() as api:
            for job_id in accepted:
                api.delete(f"/api/v1/jobs/{job_id}")
        wait_for(lambda: httpx.get(login_site.url + "healthz").json()["jobs_running"] == 0, 60, "the stops")


def test_the_failed_login_lockout_ends_when_its_window_has_passed(tmp_path: Path) -> None:
    """The login limit of webui/access.py on a clock of the test's, so that five minutes pass
    at once; the server test above shows the limit holds over HTTP."""
    now = [1000.0]
    access = Access(Settings(auth_user="team", auth_password="the right one"), tmp_path, clock=lambda: now[0])

    def attempt(password: str) -> bool | float:
        wait = access.begin_login("?")  # the address a check is made for, outside a request
        if wait:
            return wait
        try:
            return asyncio.run(access.check_login("team", password))
        finally:
            access.end_login("?")

    assert [attempt("wrong") for _ in range(MAX_FAILED_LOGINS)] == [False] * MAX_FAILED_LOGINS
    now[0] += 10
    assert attempt("the right one") == FAILED_LOGIN_WINDOW_S - 10  # locked out, even with it right
    now[0] += FAILED_LOGIN_WINDOW_S - 10 + 1
    assert attempt("the right one") is True  # the failures aged out
    assert access.is_admin("team") and not access.is_admin("someone")  # the shared login is an admin
