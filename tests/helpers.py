"""Starting the real server (`python -m webui`) for a test, on loopback, and stopping it."""

from __future__ import annotations

import json
import os
import re
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

PROJECT = Path(__file__).resolve().parents[1]


def readme_code_blocks(language: str) -> list[str]:
    """The fenced code blocks of the README in `language`, in order."""
    readme = (PROJECT / "README.md").read_text("utf-8")
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_server(
    workdir: Path,
    cache_dir: Path,
    *,
    module: str = "webui",
    env: dict[str, str] | None = None,
    **settings: str,
) -> Iterator[Server]:
    """The WebUI (`python -m <module>`) on a free loopback port with the demo model;
    ZIMAGE_<KEY>=value per setting, `env` added to the environment."""
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
    log = workdir / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}/", out, log, process)
    try:
        deadline = time.monotonic() + 120
        # Up means: healthy over HTTP, and saying so in the log with the demo model named.
        while not (healthy(server.url) and "Serving demo model on http://127.0.0.1" in server.log_text()):
            assert process.poll() is None, server.log_text()
            assert time.monotonic() < deadline, "server did not start in 120 s: " + server.log_text()
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
