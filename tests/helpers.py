"""Starting the real server (`python -m webui`) for a test, on loopback, and stopping it."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from webui.engine import Engine
from webui.jobs import execute
from webui.jobs.record import STOPPED, JobRecord
from webui.request import GenerationRequest

PROJECT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT / "artifacts"  # screenshots of browser tests (not committed)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and quiet on a machine without internet (no update or sync traffic).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


DOCS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]


def readme_code_blocks(language: str) -> list[str]:
    """The fenced code blocks in `language` of the README and the pages of docs/, in order."""
    return [
        block
        for page in DOCS
        for block in re.findall(rf"```{language}\n(.*?)```", page.read_text("utf-8"), flags=re.S)
    ]


# Ports for test servers: below Linux's ephemeral range (32768 and up, where clients' ports
# come from), a block of 1000 for each pytest-xdist worker, each port handed out once.
PORTS_FROM, PORTS_PER_WORKER = 20_000, 1_000
_next_port = itertools.count(
    PORTS_FROM + PORTS_PER_WORKER * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
)


def free_port() -> int:
    """A loopback port no other test of this run has had, and free now."""
    for port in _next_port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken by something outside the tests
            return port
    raise AssertionError("unreachable")


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def healthy(url: str) -> bool:
    try:
        return get_json(url + "healthz", timeout=2)["status"] == "ok"
    except OSError:
        return False


@dataclass
class Server:
    url: str
    output_dir: Path
    log: Path
    process: subprocess.Popen
    faults: Path | None = None  # where its faults are armed, when started by `server_with_faults`

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def spawn_server(
    workdir: Path,
    cache_dir: Path,
    *,
    module: str = "webui",
    env: dict[str, str] | None = None,
    log_name: str = "server.log",
    **settings: str,
) -> Server:
    """Start the WebUI (`python -m <module>`) on a free loopback port with the demo model, without
    waiting for it; ZIMAGE_<KEY>=value per setting, `env` added to the environment."""
    port, out = free_port(), workdir / "outputs"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ZIMAGE_CACHE_DIR": str(cache_dir),
        "ZIMAGE_OUTPUT_DIR": str(out),
        "ZIMAGE_MIN_SIZE": "32",
        "ZIMAGE_PORT": str(port),
        "ZIMAGE_HOST": "127.0.0.1",
        **(env or {}),
        **{f"ZIMAGE_{k.upper()}": v for k, v in settings.items()},
    }
    log = workdir / log_name
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return Server(f"http://127.0.0.1:{port}/", out, log, process)


def wait_until_up(server: Server) -> None:
    """Up means: healthy over HTTP, and saying so in the log with the demo model named."""
    deadline = time.monotonic() + 120
    while not (healthy(server.url) and "Serving demo model on http://127.0.0.1" in server.log_text()):
        assert server.process.poll() is None, server.log_text()
        assert time.monotonic() < deadline, "server did not start in 120 s: " + server.log_text()
        time.sleep(0.2)


@contextmanager
def running_server(workdir: Path, cache_dir: Path, **options: Any) -> Iterator[Server]:
    """The WebUI started as `spawn_server` does, up, and stopped (SIGTERM) afterwards."""
    server = spawn_server(workdir, cache_dir, **options)
    try:
        wait_until_up(server)
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            raise


@contextmanager
def server_with_faults(workdir: Path, cache_dir: Path, faults: Path, **options: Any) -> Iterator[Server]:
    """The real server with tests/faults.py's hooks (`python -m tests.faults`), its faults armed
    by files in `faults` (`arm`); as `running_server` otherwise."""
    faults.mkdir(parents=True, exist_ok=True)
    env = {**options.pop("env", {}), "WEBUI_FAULTS": str(faults)}
    with running_server(workdir, cache_dir, module="tests.faults", env=env, **options) as server:
        server.faults = faults
        yield server


def arm(faults: Path, name: str, content: str = "") -> None:
    """Arm a fault of tests/faults.py atomically (the server reads the file while it runs)."""
    partial = faults / f".{name}.partial"
    partial.write_text(content)
    partial.rename(faults / name)


@contextmanager
def held(faults: Path, forwards: int) -> Iterator[None]:
    """Pipeline calls run `forwards` steps (transformer forwards), then wait until the block
    ends: what a test sees mid-job, it sees however fast the machine."""
    arm(faults, "hold", str(forwards))
    try:
        yield
    finally:
        (faults / "hold").unlink(missing_ok=True)


@contextmanager
def slowed(faults: Path, step_s: float) -> Iterator[None]:
    """Each step (transformer forward) first sleeps `step_s`: work that outlasts a test's checks."""
    arm(faults, "slow", str(step_s))
    try:
        yield
    finally:
        (faults / "slow").unlink(missing_ok=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


@dataclass(frozen=True)
class Made:
    """One image a job saved, as the engine tests read it."""

    index: int
    prompt_index: int
    variant: int
    prompt: str
    seed: int
    path: Path

    @property
    def image(self) -> Image.Image:
        with Image.open(self.path) as image:
            image.load()
            return image.copy()


class Result:
    """A job run at once by `webui.jobs.execute.generate`, with the views the tests use."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record

    @property
    def images(self) -> list[Made]:
        r = self.record
        return [
            Made(i.index, i.prompt_index, i.variant, r.prompt_of(i), i.seed, r.path_of(i)) for i in r.saved
        ]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(i.seed for i in self.record.images)

    @property
    def cancelled(self) -> bool:
        return self.record.status == STOPPED

    @property
    def base_seed(self) -> int:
        return self.record.request.seed

    @property
    def output_dir(self) -> Path:
        return self.record.folder

    @property
    def request_id(self) -> str:
        return self.record.id

    @property
    def black_seeds(self) -> list[int]:
        return self.record.black_seeds


def make(engine: Engine, request: GenerationRequest, **options: Any) -> Result:
    """Run `request` on `engine` outside any queue, as batch mode does."""
    return Result(execute.generate(engine, request, **options))


# The smallest request: one 32x32 image in one step (override any of it).
SMALL_REQUEST = {
    "images_per_prompt": 1,
    "seed": 1,
    "width": 32,
    "height": 32,
    "steps": 1,
    "guidance_scale": 0.0,
}


def generate(user: Any, **request: Any) -> tuple:
    """/generate as a script calls it (`user` a gradio_client Client), SMALL_REQUEST unless
    `request` says otherwise."""
    return user.predict(**{**SMALL_REQUEST, **request}, api_name="/generate")


def gallery_boxes(page: Any, count: int) -> list[dict[str, float]]:
    """Where the gallery's first `count` images sit (a playwright Page), measured once every one
    has loaded: an image still loading sits elsewhere in its cell."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    return [page.locator("#gallery img").nth(n).bounding_box() for n in range(count)]


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium under Playwright, closed afterwards (a playwright Browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
