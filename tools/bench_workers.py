"""Distributed throughput: 1, 2, 4 ... GPU workers side by side with the embedded engine.

    python -m tools.bench --workers 4 --a 0.05 --b 0.8 --size 1024

Real Redis (redis-server on loopback, with a password), real Celery workers and the real web
host, each worker with the latency model of tools/bench.py (a stand-in GPU: a call of n images
sleeps a + b*n seconds). Four workers run throughout; Celery's remote control (cancel_consumer
/ add_consumer) sets how many take tasks, so that every round measures, one after the other:
the engine alone (this process) on J x N prompts in one request, then 1, 2, 4 ... distributed
workers on J jobs of N prompts sent at once through /generate (a team's sustained load), with
the CPU the cluster's processes used. Then U users each send single-image jobs to
one worker: how many images share a call. Writes a JSON report and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from tools.bench import PROMPT, build_model, cpu_seconds, say
from webui.distributed import broker
from webui.engine import Engine
from webui.jobs.execute import generate
from webui.request import GenerationRequest
from webui.settings import Settings


def latency_label(args: argparse.Namespace) -> str:
    return f"latency model a={args.a} b={args.b}"


def patched_main(args: argparse.Namespace, rest: list[str]) -> int:
    """A worker or web process whose model is the latency model (workers) or whose tokenizer
    says so (web), then the real entry point."""
    from webui.loading import load_tokenizer

    if args.role == "worker":
        from webui.distributed.worker import main as worker_main

        return worker_main(rest, load_model=lambda s: build_model(args, s))
    from webui.__main__ import main as web_main

    return web_main(rest, load_tokenizer=lambda s: (load_tokenizer(s)[0], latency_label(args), "fp32", True))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class Cluster:
    """Redis, the web host and `count` workers, in a temporary folder."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.port = args.port
        redis_port, password = args.port + 1, secrets.token_hex(12)
        self.broker_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        (workdir / "redis").mkdir()
        (workdir / "redis.conf").write_text(
            f"bind 127.0.0.1\nport {redis_port}\nrequirepass {password}\n"
            f"appendonly yes\ndir {workdir / 'redis'}\n"
        )
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        self.processes = [self._spawn([redis_server, str(workdir / "redis.conf")], "redis")]
        time.sleep(0.5)
        env = {
            "ZIMAGE_BROKER_URL": self.broker_url,
            "ZIMAGE_MAX_BATCH_SIZE": str(args.max_batch),
            "ZIMAGE_MIN_SIZE": "32",
            "ZIMAGE_QUEUE_SIZE": "256",
            "ZIMAGE_OUTPUT_DIR": str(workdir / "served"),
            "ZIMAGE_PORT": str(self.port),
        }
        self.names = [f"w{n}" for n in range(args.workers)]
        for name in self.names:
            self.processes.append(self._spawn(self._command("worker", "--name", name), name, env))
        self.processes.append(self._spawn(self._command("web"), "web", env))
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 300
        while True:
            try:
                if len(get_json(self.url + "healthz")["workers"]) == args.workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"the cluster did not start; logs in {workdir}")
            time.sleep(0.5)
        self.app = broker.celery_app(self.broker_url, 600)
        self.queue = broker.queue_for(broker.model_key(latency_label(args), "fp32"))
        self.hosts = {w["name"].split("@")[0]: w["name"] for w in get_json(self.url + "healthz")["workers"]}

    def _command(self, role: str, *extra: str) -> list[str]:
        a = self.args
        return [
            sys.executable,
            "-m",
            "tools.bench_workers",
            "--role",
            role,
            "--a",
            str(a.a),
            "--b",
            str(a.b),
            *extra,
        ]

    def _spawn(self, command: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("w")
        return subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

    def use(self, count: int) -> None:
        """Exactly the first `count` workers take tasks from now on (Celery remote control)."""
        on = [self.hosts[name] for name in self.names[:count]]
        off = [self.hosts[name] for name in self.names[count:]]
        if on:
            self.app.control.add_consumer(self.queue, destination=on, reply=True, timeout=5)
        if off:
            self.app.control.cancel_consumer(self.queue, destination=off, reply=True, timeout=5)

    def cpu_s(self) -> float:
        """CPU seconds used so far by Redis, the workers and the web host."""
        return sum(cpu_seconds(p.pid)[0] for p in self.processes)

    def calls(self) -> dict[str, float]:
        return get_json(self.url + "healthz")["calls"]

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def generate_on(client: Any, prompts: str, args: argparse.Namespace) -> None:
    """One job through /generate, as the page sends it: one image per prompt, 8 steps."""
    client.predict(
        prompts=prompts,
        images_per_prompt=1,
        seed=1,
        width=args.size,
        height=args.size,
        steps=8,
        guidance_scale=0.0,
        api_name="/generate",
    )


def jobs_rate(cluster: Cluster, args: argparse.Namespace, tag: str) -> dict[str, float]:
    """Images/s of `args.jobs` jobs of `args.images` prompts each, sent at once through
    /generate as the page does (a team's sustained load), and the CPU the cluster used."""
    from gradio_client import Client

    clients = [Client(cluster.url, verbose=False, download_files=False) for _ in range(args.jobs)]

    def job(n: int) -> None:
        prompts = "\n".join(PROMPT.format(n=f"{tag}.{n}.{k}", colour="red") for k in range(args.images))
        generate_on(clients[n], prompts, args)

    cpu_before, started = cluster.cpu_s(), time.monotonic()
    threads = [threading.Thread(target=job, args=(n,)) for n in range(args.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    cpu = cluster.cpu_s() - cpu_before
    return {
        "images_per_s": args.jobs * args.images / wall,
        "cpu_fraction": cpu / (wall * (os.cpu_count() or 1)),
    }


def users_packing(cluster: Cluster, args: argparse.Namespace) -> dict[str, float]:
    """U users each sending single-image jobs to one worker: images per pipeline call."""
    from gradio_client import Client

    cluster.use(1)
    clients = [Client(cluster.url, verbose=False, download_files=False) for _ in range(args.users)]
    before, started = cluster.calls(), time.monotonic()

    def user(n: int) -> None:
        for k in range(max(1, args.images // args.users)):
            generate_on(clients[n], PROMPT.format(n=f"user {n}.{k}", colour="blue"), args)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(args.users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after, wall = cluster.calls(), time.monotonic() - started
    calls, images = after["count"] - before["count"], after["images"] - before["images"]
    return {
        "images_per_s": images / wall,
        "calls": calls,
        "images_per_call": round(images / max(1, calls), 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:

    settings = Settings.from_sources([], os.environ)
    with tempfile.TemporaryDirectory(prefix="zimage-bench-workers-") as tmp:
        workdir = Path(tmp)
        if args.logs:  # kept: the processes' logs and outputs
            workdir = args.logs
            workdir.mkdir(parents=True)
        settings = replace(
            settings, output_dir=workdir / "engine", min_size=32, max_batch_size=args.max_batch
        )
        engine = Engine(build_model(args, settings), settings.validate())
        say(f"starting Redis, the web host and {args.workers} workers")
        cluster = Cluster(args, workdir)
        counts = [n for n in (1, 2, 4, 8, 16) if n <= args.workers]
        rates: dict[str, list[float]] = {"engine": [], **{f"workers_{n}": [] for n in counts}}
        cpu: dict[str, list[float]] = {f"workers_{n}": [] for n in counts}
        try:
            cluster.use(args.workers)
            jobs_rate(cluster, args, "warm-up")
            for r in range(1, args.rounds + 1):
                say(f"round {r} of {args.rounds}: engine, then {', '.join(map(str, counts))} workers")
                request = GenerationRequest(
                    [
                        PROMPT.format(n=f"engine {r}.{n}", colour="red")
                        for n in range(args.jobs * args.images)
                    ],
                    width=args.size,
                    height=args.size,
                    seed=1,
                )
                started = time.monotonic()
                generate(engine, request)
                rates["engine"].append(args.jobs * args.images / (time.monotonic() - started))
                for n in counts:
                    cluster.use(n)
                    measured = jobs_rate(cluster, args, f"{r}.{n}")
                    rates[f"workers_{n}"].append(measured["images_per_s"])
                    cpu[f"workers_{n}"].append(round(measured["cpu_fraction"], 3))
            say("users of single-image jobs on one worker")
            packing = users_packing(cluster, args)
        finally:
            engine.close()
            cluster.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    one = rates["workers_1"]
    ratios = {
        "one_worker_vs_engine": statistics.median(w / e for w, e in zip(one, rates["engine"], strict=True)),
        **{
            f"workers_{n}_vs_{n}x_one": statistics.median(
                w / (n * o) for w, o in zip(rates[f"workers_{n}"], one, strict=True)
            )
            for n in counts[1:]
        },
    }
    return {
        "model": latency_label(args),
        "size": args.size,
        "images": args.images,
        "rounds": args.rounds,
        "max_batch_size": args.max_batch,
        "cores": os.cpu_count(),
        "images_per_s": rates,
        "median_images_per_s": median,
        "ratios": ratios,
        "cluster_cpu_fraction": cpu,
        "jobs": args.jobs,
        "users_on_one_worker": packing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench --workers N", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=4, help="most workers (1, 2, 4 ... up to this)")
    parser.add_argument("--a", type=float, default=0.05, help="latency model: seconds per call")
    parser.add_argument("--b", type=float, default=0.8, help="latency model: seconds per image")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=16, help="images per job (default 16)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs sent at once per measurement (default 2)")
    parser.add_argument("--users", type=int, default=8, help="users of single-image jobs (default 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--port", type=int, default=7911, help="web port; Redis gets the next one")
    parser.add_argument("--json", type=Path, default=Path("bench-workers.json"))
    parser.add_argument("--logs", type=Path, help="a new folder to keep the logs and outputs in")
    parser.add_argument("--role", choices=["worker", "web"], help=argparse.SUPPRESS)
    parser.set_defaults(model="latency")
    args, rest = parser.parse_known_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.role:
        return patched_main(args, rest)
    report = run(args)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\n{'images/s':<28}{'median':>8}   per round")
    for name, values in report["images_per_s"].items():
        print(f"{name:<28}{statistics.median(values):>8.3f}   {' '.join(f'{v:.3f}' for v in values)}")
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.3f}")
    print(f"cluster CPU (fraction of all cores) per round: {report['cluster_cpu_fraction']}")
    print(f"users on one worker: {report['users_on_one_worker']}")
    print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
