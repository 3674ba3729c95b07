"""Real processes for the distributed tests: a Redis server with a password, GPU workers
(`python -m webui.distributed.worker` with the demo model on the CPU), and the web host."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.helpers import PROJECT, free_port

REDIS = shutil.which("redis-server")
WHY_NO_REDIS = (
    "redis-server is not installed (./launch.sh test installs Debian's redis-server when run as root)"
)


@dataclass
class RedisServer:
    """redis-server on loopback with a password and an append-only file, as launch.sh runs it."""

    folder: Path
    port: int
    password: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "redis.conf"
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\nappendonly yes\n"
            f'dir {self.folder}\nsave ""\n'
        )
        log = (self.folder / "redis.log").open("a")
        assert REDIS is not None
        self.process = subprocess.Popen([REDIS, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def start_redis(folder: Path) -> RedisServer:
    server = RedisServer(folder, free_port(), secrets.token_hex(12))
    server.start()
    return server


@dataclass
class Worker:
    name: str
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_worker(
    name: str,
    broker_url: str,
    workdir: Path,
    cache_dir: Path,
    *,
    module: str = "webui.distributed.worker",
    env: dict[str, str] | None = None,
    **settings: str,
) -> Worker:
    """A demo-model worker on the CPU, not waited for."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ZIMAGE_CACHE_DIR": str(cache_dir),
        "ZIMAGE_BROKER_URL": broker_url,
        "ZIMAGE_MODEL": "demo",
        "ZIMAGE_MIN_SIZE": "32",
        # A state folder of its own (the input images it fetched): no folder shared with the web host.
        "ZIMAGE_STATE_DIR": str(workdir / f"{name}-state"),
        "ZIMAGE_LORA_DIR": str(workdir / f"{name}-loras"),  # nor the web host's LoRA folder
        **(env or {}),
        **{f"ZIMAGE_{k.upper()}": v for k, v in settings.items()},
    }
    log = workdir / f"{name}.log"
    with log.open("a") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", *module.split(), "--name", name],
            cwd=PROJECT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Worker(name, log, process)
