"""What the running server exposes: its port, its files, uploads, CORS, monitoring, warnings."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from tests.helpers import PROJECT, Server, generate
from webui.access import Access
from webui.settings import Settings
from webui.ui import Page, create_demo
from webui.ui.i18n import I18N
from webui.uploads import Uploads


@pytest.fixture
def server(shared_server: Server) -> Server:
    return shared_server


def status(
    url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_a_second_instance_on_a_taken_port_fails_clearly_and_does_not_drift(
    server: Server, cache_dir: Path
) -> None:
    port = urllib.parse.urlsplit(server.url).port
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZIMAGE_CACHE_DIR": str(cache_dir), "ZIMAGE_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, "-m", "webui"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stdout + done.stderr
    assert "Serving" not in done.stdout + done.stderr  # it never served, on this port or the next


def test_file_routes_serve_generated_outputs_and_nothing_else(server: Server, cache_dir: Path) -> None:
    raw = Client(server.url, verbose=False, download_files=False)
    gallery, *_ = generate(raw, prompts="a navy mug", width=64, height=64, steps=2)
    png = Path(gallery[0]["image"]["path"])
    assert status(gallery[0]["image"]["url"])[0] == 200

    route = server.url + "gradio_api/file="
    forbidden = [
        "/etc/passwd",
        str(PROJECT / "webui" / "server.py"),  # the app's own source
        str(next(cache_dir.rglob("model_index.json"))),  # the model cache
        str(server.log),  # beside the outputs folder
        f"{server.output_dir}/../{server.log.name}",  # traversal out of it
        urllib.parse.quote(f"{server.output_dir}/../{server.log.name}", safe=""),
        f"{png.parent}/../../../{server.log.name}",
    ]
    for path in forbidden:
        code, _ = status(route + path)
        assert code in (403, 404), f"{path} answered {code}"


def test_uploads_are_size_limited(server: Server) -> None:
    boundary = "zimage-boundary"

    def upload(size: int) -> int:
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="p.txt"\r\n'
                f"Content-Type: text/plain\r\n\r\n"
            ).encode()
            + b"a\n" * (size // 2)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return status(
            server.url + "gradio_api/upload",
            "POST",
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            body,
        )[0]

    assert upload(21_000_000) == 413  # over ZIMAGE_MAX_INPUT_MB (20), the largest file the page takes
    assert upload(3 * 1024 * 1024) == 200  # an input image
    assert upload(10 * 1024) == 200


def test_other_origins_get_no_cors_grant(server: Server) -> None:
    # Reached by a name other than localhost (as on a team network), where Gradio's own rules
    # would grant any origin.
    # This machine's name is one the server answers to (other names get 400: test_security.py).
    evil = {"Origin": "http://evil.example", "Host": f"{socket.gethostname()}:7860"}
    code, headers = status(server.url + "gradio_api/info", headers=evil)
    assert code == 200 and "access-control-allow-origin" not in {k.lower() for k in headers}
    code, headers = status(
        server.url + "gradio_api/queue/join", "OPTIONS", {**evil, "Access-Control-Request-Method": "POST"}
    )
    assert code == 400 and "access-control-allow-origin" not in {k.lower() for k in headers}


def test_monitoring_is_off(server: Server) -> None:
    assert status(server.url + "gradio_api/monitoring")[0] in (403, 404)


@pytest.mark.parametrize(
    ("host", "user", "warned"), [("0.0.0.0", "", True), ("0.0.0.0", "admin", False), ("127.0.0.1", "", False)]
)
def test_the_page_warns_when_open_to_the_network_without_a_login(
    demo_model, settings: Settings, host: str, user: str, warned: bool
) -> None:
    # The page as it would be built for that host; tests listen on loopback only.
    exposed = dataclasses.replace(settings, host=host, auth_user=user, auth_password=user and "secret")
    exposed = exposed.validate()
    access = Access(exposed, exposed.state_path)
    page = Page(None, exposed, access, Uploads(access, 60))  # type: ignore[arg-type]  # no service needed
    config = str(create_demo(page, "demo model", True, "key").get_config_file())
    # The banner is the translated key (the browser shows it in its language) and the address.
    assert (f'"key": "exposed_banner"}} `{host}`' in config) is warned
    assert "Open to the network without a login" in I18N.translations["en"]["exposed_banner"]


def test_an_output_folder_that_cannot_be_written_gives_a_clear_error_and_the_server_keeps_answering(
    server: Server,
) -> None:
    user = Client(server.url, verbose=False)
    moved = server.output_dir.with_name("outputs-moved")
    if server.output_dir.exists():
        server.output_dir.rename(moved)
    server.output_dir.write_text("a file where the output folder should be")  # unwritable even for root
    try:
        for _ in range(2):  # and again: the failure leaves nothing stuck
            with pytest.raises(
                Exception, match=r"Could not save the images: .* is writable and has free space"
            ):
                generate(user, prompts="a teal kettle", images_per_prompt=2, width=64, height=64, steps=2)
        code, _ = status(server.url + "healthz")
        assert code == 200 and status(server.url)[0] == 200
    finally:
        server.output_dir.unlink()
        if moved.exists():
            moved.rename(server.output_dir)
    assert len(generate(user, prompts="a teal kettle", width=64, height=64, steps=2)[0]) == 1
