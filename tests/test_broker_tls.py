"""A `rediss://` broker: Celery and our Redis client speak TLS and check the server's
certificate (against `?ssl_ca_certs=`), refusing a server they cannot verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster import REDIS, WHY_NO_REDIS
from tests.helpers import PROJECT, free_port
from webui.distributed import broker

OPENSSL = shutil.which("openssl")
pytestmark = [
    pytest.mark.skipif(REDIS is None, reason=WHY_NO_REDIS),
    pytest.mark.skipif(OPENSSL is None, reason="no openssl command to make a test certificate"),
]


def openssl(folder: Path, *args: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """redis-server speaking TLS only, with a certificate from a CA of our own."""
    folder = tmp_path_factory.mktemp("tls")
    openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    )
    openssl(
        folder,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        folder,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    port = free_port()
    assert REDIS is not None
    process = subprocess.Popen(
        [
            REDIS,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "pw",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.5)
        yield port, folder / "ca.crt"
    finally:
        process.terminate()
        process.wait(10)


def test_celery_and_the_client_speak_tls_with_the_certificate_checked(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://:pw@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    client = broker.redis_client(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the TLS Redis did not answer"
            time.sleep(0.2)
    broker.celery_app(url, 60).send_task(broker.TASK_NAME, args=[{}], queue="tls-check")
    assert client.llen("tls-check") == 1

    # Without the CA, neither trusts the server (a fresh process: nothing cached from above).
    unverified = f"rediss://:pw@127.0.0.1:{port}/0"
    probe = (
        "import sys\n"
        "from webui.distributed import broker\n"
        "client = lambda: broker.redis_client(sys.argv[1]).ping()\n"
        "celery = lambda: broker.celery_app(sys.argv[1], 60).send_task('x', queue='q')\n"
        "for name, attempt in (('client', client), ('celery', celery)):\n"
        "    try:\n"
        "        attempt()\n"
        "        print(name, 'connected')\n"
        "    except Exception as exc:\n"
        "        print(name, 'refused', 'CERTIFICATE_VERIFY_FAILED' in str(exc))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, unverified], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split("\n")[:2] == ["client refused True", "celery refused True"], result.stderr
