"""Throughput benchmark: the engine alone and the served app, side by side in one run.

    python -m tools.bench --model demo --size 256
    python -m tools.bench --model latency --a 0.05 --b 0.8 --size 1024
    python -m tools.bench --workers 4 --a 0.05 --b 0.8 --size 1024   (tools/bench_workers.py)

Measures (1) the engine alone: N single-prompt requests one after the other, and the same N
prompts as one request; (2) the served app (`python -m webui`-equivalent in a subprocess, on
loopback): U concurrent gradio_client users each sending single-prompt requests, then the N
prompts in one box, with request latencies; (3) /healthz and page-load latency while (2)
runs; (4) the ratios. The batched engine and the served measurements alternate for R rounds
(a shared machine's speed drifts by tens of percent within minutes) and each ratio is the
median of its per-round values. Prints a table and writes the JSON report.

`--model latency` swaps the pipeline for a stand-in that sleeps `a + b*n` seconds per call of
n images and returns real images of the requested size: server overhead at GPU speeds,
without a GPU. It exists only here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from types import SimpleNamespace
from typing import Any

import torch

from webui.engine import Engine
from webui.jobs.execute import generate
from webui.loading import LoadedModel, load_model
from webui.request import GenerationRequest
from webui.settings import Settings

PROMPT = "product shot {n}: a {colour} sneaker on a white seamless background, studio lighting"
# A monitor's pace, not a load of its own: each probe loads the page and asks /healthz.
PROBE_INTERVAL_S = 0.5
COLOURS = ["red", "navy", "olive", "black", "white", "tan", "grey", "teal"]


class LatencyPipeline:
    """Stands in for ZImagePipeline: a call of n images takes a + b*n seconds, images included.

    Like a GPU pipeline, it makes its output images inside the call's time (their CPU cost is
    taken out of the sleep), so that the lane's own decode step costs next to nothing.
    """

    def __init__(self, a: float, b: float, tokenizer: Any) -> None:
        self.a, self.b, self.tokenizer = a, b, tokenizer
        self.busy_s = 0.0  # simulated GPU time, for the busy fraction
        self._interrupt = False
        # output_type="latent" returns finished images in [-1, 1]; "decoding" passes them on.
        self.vae = SimpleNamespace(
            dtype=torch.float32,
            config=SimpleNamespace(scaling_factor=1.0, shift_factor=0.0, block_out_channels=[0] * 4),
            decode=lambda images, return_dict=False: (images,),
        )

    def encode_prompt(self, prompt: list[str], **_: Any) -> tuple[list[torch.Tensor], list]:
        return [torch.zeros(len(self.tokenizer(p)["input_ids"]), 8) for p in prompt], []

    def __call__(
        self,
        *,
        prompt_embeds: list,
        height: int,
        width: int,
        num_inference_steps: int,
        generator: list[torch.Generator],
        callback_on_step_end: Any,
        **_: Any,
    ) -> Any:
        started = time.monotonic()
        self._interrupt = False
        # Smooth colour fields of the full size: they PNG-encode like a photo, not like noise.
        small = torch.stack([torch.randn(3, height // 8, width // 8, generator=g) for g in generator])
        images = torch.nn.functional.interpolate(small.tanh(), scale_factor=8, mode="bilinear")
        total = self.a + self.b * len(prompt_embeds)
        for step in range(num_inference_steps):
            if self._interrupt:
                continue
            time.sleep(max(0.0, started + total * (step + 1) / num_inference_steps - time.monotonic()))
            self.busy_s += total / num_inference_steps
            callback_on_step_end(self, step, None, {})
        return SimpleNamespace(images=images)


def build_model(args: argparse.Namespace, settings: Settings) -> LoadedModel:
    if args.model != "latency":  # demo, or full-random (python -m webui.bench runs that)
        return load_model(replace(settings, model=args.model))
    demo = load_model(replace(settings, model="demo"))
    pipe = LatencyPipeline(args.a, args.b, demo.pipe.tokenizer)
    return LoadedModel(
        pipe,
        "latency model",
        f"latency model a={args.a} b={args.b}",
        True,  # type: ignore[arg-type]
        torch.device("cpu"),
        torch.float32,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.5), 4), "p95": round(pick(0.95), 4), "n": len(ordered)}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time used so far by process `pid` and by this process (Linux /proc; zeros elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        other = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        other = 0.0
    own = resource.getrusage(resource.RUSAGE_SELF)
    return other, own.ru_utime + own.ru_stime


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def prompts_for(args: argparse.Namespace) -> list[str]:
    return [PROMPT.format(n=n, colour=COLOURS[n % 8]) for n in range(args.images)]


def engine_sequential(engine: Engine, args: argparse.Namespace) -> float:
    """Images/s for N single-prompt requests, one after the other (after a warm-up)."""
    prompts, common = prompts_for(args), {"width": args.size, "height": args.size, "seed": 1}
    # Warm-up with a full call: the first call of each batch shape is slow on the CPU.
    generate(engine, GenerationRequest(prompts[: engine.settings.max_batch_size], **common))
    started = time.monotonic()
    for prompt in prompts:
        generate(engine, GenerationRequest([prompt], **common))
    return args.images / (time.monotonic() - started)


def engine_batched(engine: Engine, args: argparse.Namespace) -> dict[str, float]:
    """Images/s for the N prompts as one request, and the CPU seconds it took."""
    request = GenerationRequest(prompts_for(args), width=args.size, height=args.size, seed=1)
    cpu_before, started = cpu_seconds(os.getpid())[1], time.monotonic()
    generate(engine, request)
    wall = time.monotonic() - started
    return {"images_per_s": args.images / wall, "cpu_s": cpu_seconds(os.getpid())[1] - cpu_before}


def view(result: tuple) -> None:
    """Fetch a /generate result's gallery images, as the page does."""
    for item in result[0]:
        with urllib.request.urlopen(item["image"]["url"], timeout=60) as response:
            response.read()


class Users:
    """The load, in its own process: U gradio_client users, then one box of N prompts."""

    def __init__(self, url: str, args: argparse.Namespace, batch_size: int, server_pid: int) -> None:
        from gradio_client import Client

        self.args, self.server_pid, self.round, self.url = args, server_pid, 0, url
        self.common = {
            "images_per_prompt": 1,
            "seed": 1,
            "width": args.size,
            "height": args.size,
            "steps": 8,
            "guidance_scale": 0.0,
            "api_name": "/generate",
        }
        # Each user has the page open already (clients made before the clock starts) and, like
        # the page, fetches the gallery's images; gradio_client would also fetch every file of
        # the result (the zip too), which a browser does only when asked.
        self.clients = [Client(url, verbose=False, download_files=False) for _ in range(args.users)]
        view(
            self.clients[0].predict(
                prompts="\n".join(f"warm-up {n}" for n in range(batch_size)), **self.common
            )
        )

    def run_round(self) -> dict[str, Any]:
        args, latencies = self.args, []
        per_user = max(1, args.images // args.users)
        self.round += 1

        def user(n: int) -> None:
            for k in range(per_user):
                prompt = PROMPT.format(
                    n=f"{self.round}.{n}.{k}", colour=COLOURS[n % 8]
                )  # new text: no cache hits
                started = time.perf_counter()
                view(self.clients[n].predict(prompts=prompt, **self.common))
                latencies.append(time.perf_counter() - started)

        url = self.url
        calls_before = calls_now(url)
        users_started, cpu_before = time.time(), cpu_seconds(self.server_pid)
        threads = [threading.Thread(target=user, args=(n,)) for n in range(args.users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        users_ended, cpu_after = time.time(), cpu_seconds(self.server_pid)
        calls_between = calls_now(url)
        box = "\n".join(f"{self.round}: {prompt}" for prompt in prompts_for(args))
        box_started = time.time()
        view(self.clients[0].predict(prompts=box, **self.common))
        box_ended = time.time()
        calls_after = calls_now(url)
        return {
            "users_images_per_s": per_user * args.users / (users_ended - users_started),
            "box_images_per_s": args.images / (box_ended - box_started),
            "latencies": latencies,
            # Where the CPU went while the users ran: the server, and these clients.
            "users_cpu": {
                "server_s": cpu_after[0] - cpu_before[0],
                "clients_s": cpu_after[1] - cpu_before[1],
                "wall_s": users_ended - users_started,
            },
            "users_calls": call_stats(calls_before, calls_between, users_ended - users_started),
            "box_calls": call_stats(calls_between, calls_after, box_ended - box_started),
        }


def users_main(args: argparse.Namespace, settings: Settings) -> None:
    """The users' process: one round per line on stdin, one JSON line back each.

    It runs at the lowest CPU priority: in real use users sit on other machines, and here 8
    gradio_client instances would take about as much CPU as the server itself.
    """
    os.nice(19)
    users = Users(args.users_of, args, settings.max_batch_size, args.server_pid)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(users.run_round()), flush=True)


def start_users(args: argparse.Namespace, url: str, server_pid: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tools.bench",
        "--users-of",
        url,
        "--server-pid",
        str(server_pid),
        "--size",
        str(args.size),
        "--images",
        str(args.images),
        "--users",
        str(args.users),
    ]
    users = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert users.stdout is not None and users.stdout.readline().strip() == "ready", "benchmark users failed"
    return users


def served_round(users: subprocess.Popen, url: str, probes: dict[str, list[float]]) -> dict[str, Any]:
    """One round of load, with /healthz and the page probed (at normal priority) meanwhile."""
    assert users.stdin is not None and users.stdout is not None
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            for name, path in (("healthz", "healthz"), ("page", "")):
                started = time.perf_counter()
                with urllib.request.urlopen(url + path, timeout=10) as response:
                    response.read()
                probes[name].append(time.perf_counter() - started)
            done.wait(PROBE_INTERVAL_S)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    users.stdin.write("round\n")
    users.stdin.flush()
    line = users.stdout.readline()
    done.set()
    prober.join()
    if not line:
        raise RuntimeError(f"benchmark users failed (exit {users.wait()})")
    return json.loads(line)


def calls_now(url: str) -> dict[str, float]:
    """The server's call counters (pipeline calls, images, seconds inside calls) from /healthz."""
    with urllib.request.urlopen(url + "healthz", timeout=10) as response:
        return json.load(response)["calls"]


def call_stats(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """Pipeline calls made between two readings of the counters."""
    calls, images = after["count"] - before["count"], after["images"] - before["images"]
    return {
        "calls": calls,
        "images_per_call": round(images / max(1, calls), 2),
        "pipeline_busy_fraction": round((after["busy_s"] - before["busy_s"]) / wall_s, 3),
        "idle_gap": after.get("idle_gap"),  # the server's recent gaps between back-to-back calls
    }


def serve_main(args: argparse.Namespace, settings: Settings) -> None:
    """The served side, in its own process: the same server as `python -m webui`."""
    from webui.log import configure_logging
    from webui.server import embedded, serve

    configure_logging("INFO")
    serve(embedded(Engine(build_model(args, settings), settings)), settings)


def start_server(args: argparse.Namespace, port: int, workdir: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "ZIMAGE_PORT": str(port),
        "ZIMAGE_HOST": "127.0.0.1",
        "ZIMAGE_QUEUE_SIZE": "256",
        "ZIMAGE_OUTPUT_DIR": str(workdir / "served"),
        "ZIMAGE_MIN_SIZE": "32",
    }
    command = [
        sys.executable,
        "-m",
        "tools.bench",
        "--serve",
        "--model",
        args.model,
        "--a",
        str(args.a),
        "--b",
        str(args.b),
    ]
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900  # a full-size model, built and compiled, takes minutes
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start") from None
            time.sleep(0.3)


def run(args: argparse.Namespace, settings: Settings, workdir: Path) -> dict[str, Any]:
    engine = Engine(build_model(args, settings), settings)
    report: dict[str, Any] = {
        "model": engine.model.source,
        "size": args.size,
        "images": args.images,
        "users": args.users,
        "rounds": args.rounds,
        "max_batch_size": settings.max_batch_size,
        "cross_batching": settings.cross_batching,
        "cores": os.cpu_count(),
    }
    say("engine: one request per prompt")
    sequential = engine_sequential(engine, args)
    url = f"http://127.0.0.1:{args.port}/"
    say("starting the server and the users")
    server = start_server(args, args.port, workdir)
    batched, served, probes = [], [], {"healthz": [], "page": []}
    try:
        users = start_users(args, url, server.pid)
        for n in range(1, args.rounds + 1):  # side by side: engine, then served, in each round
            say(f"round {n} of {args.rounds}: engine, then served")
            batched.append(engine_batched(engine, args))
            served.append(served_round(users, url, probes))
        users.stdin.close()  # type: ignore[union-attr]
        users.wait(60)
    finally:
        engine.close()
        server.terminate()
        server.wait(30)
    if args.server_log:
        shutil.copyfile(workdir / "server.log", args.server_log)
    return summarize(report, args, engine, sequential, batched, served, probes)


def summarize(
    report: dict[str, Any],
    args: argparse.Namespace,
    engine: Engine,
    sequential: float,
    batched: list[dict[str, Any]],
    served: list[dict[str, Any]],
    probes: dict[str, list[float]],
) -> dict[str, Any]:
    """The report: every round's figures, latencies, and the ratios (medians of per-round ones)."""
    report["engine"] = {
        "sequential_images_per_s": sequential,
        "batched_images_per_s": [b["images_per_s"] for b in batched],
        "batched_cpu_s": [b["cpu_s"] for b in batched],
    }
    if args.model == "latency":
        report["engine"]["simulated_gpu_busy_s"] = engine.model.pipe.busy_s  # type: ignore[attr-defined]
    report["served"] = {
        "users_images_per_s": [r["users_images_per_s"] for r in served],
        "box_images_per_s": [r["box_images_per_s"] for r in served],
        "users_cpu": [r["users_cpu"] for r in served],
        "users_calls": [r["users_calls"] for r in served],
        "box_calls": [r["box_calls"] for r in served],
        "request_latency_s": percentiles([x for r in served for x in r["latencies"]]),
        "healthz_latency_ms": {
            k: round(v * 1000, 1) for k, v in percentiles(probes["healthz"]).items() if k != "n"
        },
        "page_latency_ms": {
            k: round(v * 1000, 1) for k, v in percentiles(probes["page"]).items() if k != "n"
        },
    }
    per_round = {
        "served_users_vs_engine_batched": [
            r["users_images_per_s"] / b["images_per_s"] for r, b in zip(served, batched, strict=False)
        ],
        "served_box_vs_engine_batched": [
            r["box_images_per_s"] / b["images_per_s"] for r, b in zip(served, batched, strict=False)
        ],
        "engine_batched_vs_sequential": [b["images_per_s"] / sequential for b in batched],
    }
    if args.model == "latency":
        per_round["served_users_vs_1_over_b"] = [r["users_images_per_s"] * args.b for r in served]
        per_round["served_users_vs_8_over_a_plus_8b"] = [
            r["users_images_per_s"] * (args.a + 8 * args.b) / 8 for r in served
        ]
    report["ratios"] = {
        name: {"median": statistics.median(values), "per_round": values} for name, values in per_round.items()
    }
    return report


def print_table(report: dict[str, Any]) -> None:
    engine, served = report["engine"], report["served"]
    rows = [
        ("engine, one request per prompt", [engine["sequential_images_per_s"]]),
        ("engine, one request with all prompts", engine["batched_images_per_s"]),
        (f"served, {report['users']} users x single prompts", served["users_images_per_s"]),
        ("served, all prompts in one box", served["box_images_per_s"]),
    ]
    print(f"\n{'images/s':<42}{'median':>8}   per round")
    for name, rates in rows:
        print(f"{name:<42}{statistics.median(rates):>8.3f}   {' '.join(f'{r:.3f}' for r in rates)}")
    latency, healthz, page = (
        served["request_latency_s"],
        served["healthz_latency_ms"],
        served["page_latency_ms"],
    )
    print(
        f"request latency p50/p95 s: {latency['p50']}/{latency['p95']}; /healthz p50/p95 ms: "
        f"{healthz['p50']}/{healthz['p95']}; page p50/p95 ms: {page['p50']}/{page['p95']}"
    )
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio['median']:.3f}   ({' '.join(f'{r:.3f}' for r in ratio['per_round'])})")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--workers" in argv or any(a.startswith("--workers=") for a in argv):  # tools/bench_workers.py
        from tools.bench_workers import main as workers_main

        return workers_main(argv)
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["demo", "latency", "full-random"], default="demo")
    parser.add_argument("--a", type=float, default=0.05, help="latency model: seconds per call")
    parser.add_argument("--b", type=float, default=0.8, help="latency model: seconds per image")
    parser.add_argument("--size", type=int, default=256, help="width and height (default 256)")
    parser.add_argument("--images", type=int, default=32, help="images per measurement (default 32)")
    parser.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of engine and served runs (default 3)")
    parser.add_argument("--port", type=int, default=7899)
    parser.add_argument("--json", type=Path, default=Path("bench-report.json"))
    parser.add_argument("--server-log", type=Path, help="keep the benchmark server's log here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--users-of", help=argparse.SUPPRESS)  # the users' process: the server URL
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.from_sources([], os.environ)
    if args.users_of:
        users_main(args, settings)
        return 0
    if args.serve:
        serve_main(args, replace(settings, output_dir=Path(os.environ["ZIMAGE_OUTPUT_DIR"])))
        return 0
    with tempfile.TemporaryDirectory(prefix="zimage-bench-") as tmp:
        workdir = Path(tmp)
        report = run(args, replace(settings, output_dir=workdir / "engine", min_size=32).validate(), workdir)
    args.json.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
