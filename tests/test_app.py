"""`python -m webui` serves the page and `/generate` (the real server, on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from webui.outputs import read_png_parameters

PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path, cache_dir: Path) -> Iterator[tuple[str, Path]]:
    port, out = free_port(), tmp_path / "outputs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZIMAGE_CACHE_DIR": str(cache_dir),
           "ZIMAGE_OUTPUT_DIR": str(out), "ZIMAGE_MIN_SIZE": "32", "ZIMAGE_PORT": str(port)}  # fmt: skip
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "webui"], cwd=PROJECT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        # Up means: answering HTTP, and saying so in the log with the demo model named.
        while not (answers(url) and "Serving demo model on http://127.0.0.1" in log_path.read_text()):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server did not start in 120 s: " + log_path.read_text()
            time.sleep(0.2)
        yield url, out
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_generate_over_http_returns_captioned_images_saved_to_disk(server: tuple[str, Path]) -> None:
    url, out = server
    client = Client(url, verbose=False)
    gallery, summary = client.predict("a red sneaker\n# skip\na navy mug", 2, 5, 48, 32, 2, 0,
                                      api_name="/generate")  # fmt: skip
    assert [item["caption"] for item in gallery] == [
        "a red sneaker (seed 5)", "a red sneaker (seed 6)", "a navy mug (seed 7)", "a navy mug (seed 8)",
    ]  # fmt: skip
    assert summary.startswith("4 images in") and "seeds 5..8 (demo model)" in summary
    saved = sorted(out.rglob("*.png"))
    assert [read_png_parameters(p)["seed"] for p in saved] == [5, 6, 7, 8]


def test_bad_input_comes_back_as_a_clear_error(server: tuple[str, Path]) -> None:
    client = Client(server[0], verbose=False)
    with pytest.raises(Exception, match=r"Width must be a multiple of 16 \(got 1000"):
        client.predict("a red sneaker", 1, -1, 1000, 64, 8, 0, api_name="/generate")
    gallery, _ = client.predict("a red sneaker", 1, 1, 32, 32, 1, 0, api_name="/generate")
    assert len(gallery) == 1  # the server keeps serving
