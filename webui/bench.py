"""Throughput benchmark: the engine alone and the served app, side by side in one run.

    python -m webui.bench --model demo --size 256
    python -m webui.bench --model latency --a 0.05 --b 0.8 --size 1024

Measures (1) the engine alone: N single-prompt requests one after the other, and the same N
prompts as one request; (2) the served app (`python -m webui`-equivalent in a subprocess, on
loopback): U concurrent gradio_client users each sending single-prompt requests, then the N
prompts in one box, with request latencies; (3) /healthz and page-load latency while (2)
runs; (4) the ratios. Prints a table and writes the JSON report.

`--model latency` swaps the pipeline for a stand-in that sleeps `a + b*n` seconds per call of
n images and returns real images of the requested size: server overhead at GPU speeds,
without a GPU. It exists only here.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from webui.engine import Engine, GenerationRequest
from webui.loading import LoadedModel, load_model
from webui.settings import Settings

PROMPT = "product shot {n}: a {colour} sneaker on a white seamless background, studio lighting"
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
        self.vae = SimpleNamespace(dtype=torch.float32, config=SimpleNamespace(scaling_factor=1.0, shift_factor=0.0),
                                   decode=lambda images, return_dict=False: (images,))  # fmt: skip

    def encode_prompt(self, prompt: list[str], **_: Any) -> tuple[list[torch.Tensor], list]:
        return [torch.zeros(len(self.tokenizer(p)["input_ids"]), 8) for p in prompt], []

    def __call__(self, *, prompt_embeds: list, height: int, width: int, num_inference_steps: int,
                 generator: list[torch.Generator], callback_on_step_end: Any, **_: Any) -> Any:  # fmt: skip
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
    demo = load_model(replace(settings, model="demo"))
    if args.model == "demo":
        return demo
    pipe = LatencyPipeline(args.a, args.b, demo.pipe.tokenizer)
    return LoadedModel(pipe, "latency model", f"latency model a={args.a} b={args.b}", True,  # type: ignore[arg-type]
                       torch.device("cpu"), torch.float32)  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.5), 4), "p95": round(pick(0.95), 4), "n": len(ordered)}


def bench_engine(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    prompts = [PROMPT.format(n=n, colour=COLOURS[n % 8]) for n in range(args.images)]
    common = {"width": args.size, "height": args.size, "seed": 1}
    engine.generate(GenerationRequest(prompts[:1], **common))  # warm-up
    started = time.monotonic()
    for prompt in prompts:
        engine.generate(GenerationRequest([prompt], **common))
    sequential = time.monotonic() - started
    started = time.monotonic()
    engine.generate(GenerationRequest(prompts, **common))
    batched = time.monotonic() - started
    return {"sequential_images_per_s": args.images / sequential, "batched_images_per_s": args.images / batched}


def bench_served(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from gradio_client import Client

    common = {"images_per_prompt": 1, "seed": 1, "width": args.size, "height": args.size, "steps": 8,
              "guidance_scale": 0.0, "api_name": "/generate"}  # fmt: skip
    latencies: list[float] = []
    probes: dict[str, list[float]] = {"healthz": [], "page": []}
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            for name, path in (("healthz", "healthz"), ("page", "")):
                started = time.perf_counter()
                with urllib.request.urlopen(url + path, timeout=10) as response:
                    response.read()
                probes[name].append(time.perf_counter() - started)
            time.sleep(0.1)

    per_user = max(1, args.images // args.users)
    # Each user has the page open already (clients made before the clock starts) and, like
    # the page, fetches the gallery's images; gradio_client would also fetch every file of
    # the result (the zip too), which a browser does only when asked.
    clients = [Client(url, verbose=False, download_files=False) for _ in range(args.users)]

    def user(n: int) -> None:
        for k in range(per_user):
            started = time.perf_counter()
            view(clients[n].predict(prompts=PROMPT.format(n=n * 100 + k, colour=COLOURS[n % 8]), **common))
            latencies.append(time.perf_counter() - started)

    view(clients[0].predict(prompts="warm-up", **common))
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    windows = {"users": time.time()}
    started = time.monotonic()
    users = [threading.Thread(target=user, args=(n,)) for n in range(args.users)]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join()
    users_wall = time.monotonic() - started
    windows["users"] = (windows["users"], time.time())
    box = "\n".join(PROMPT.format(n=n, colour=COLOURS[n % 8]) for n in range(args.images))
    started, box_started = time.monotonic(), time.time()
    view(clients[0].predict(prompts=box, **common))
    box_wall = time.monotonic() - started
    windows["box"] = (box_started, time.time())
    stop.set()
    prober.join()
    return {
        "users": args.users,
        "users_images_per_s": per_user * args.users / users_wall,
        "request_latency_s": percentiles(latencies),
        "box_images_per_s": args.images / box_wall,
        "healthz_latency_ms": {k: v * 1000 for k, v in percentiles(probes["healthz"]).items() if k != "n"},
        "page_latency_ms": {k: v * 1000 for k, v in percentiles(probes["page"]).items() if k != "n"},
        "windows": windows,
    }


CALL_LINE = re.compile(r"^(\S+ \S+) INFO webui\.lane: call of (\d+) images .* in ([\d.]+) s")


def call_stats(log: Path, start: float, end: float) -> dict[str, float]:
    """Pipeline calls that ended within [start, end] (epoch seconds), from the server's log."""
    sizes, busy = [], 0.0
    for line in log.read_text("utf-8", "replace").splitlines():
        match = CALL_LINE.match(line)
        if match is None:
            continue
        ended = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if start <= ended <= end:
            sizes.append(int(match[2]))
            busy += float(match[3])
    return {"calls": len(sizes), "images_per_call": sum(sizes) / max(1, len(sizes)),
            "pipeline_busy_fraction": busy / (end - start)}  # fmt: skip


def view(result: tuple) -> None:
    """Fetch a /generate result's gallery images, as the page does."""
    for item in result[0]:
        with urllib.request.urlopen(item["image"]["url"], timeout=60) as response:
            response.read()


def serve_main(args: argparse.Namespace, settings: Settings) -> None:
    """The served side, in its own process: the same server as `python -m webui`."""
    from webui.log import configure_logging
    from webui.server import serve

    configure_logging("INFO")  # the lane's "call of N images" lines feed the call statistics
    serve(Engine(build_model(args, settings), settings), settings)


def start_server(args: argparse.Namespace, port: int, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "ZIMAGE_PORT": str(port), "ZIMAGE_HOST": "127.0.0.1", "ZIMAGE_QUEUE_SIZE": "256",
           "ZIMAGE_OUTPUT_DIR": str(workdir / "served"), "ZIMAGE_MIN_SIZE": "32"}  # fmt: skip
    command = [sys.executable, "-m", "webui.bench", "--serve", "--model", args.model, "--a", str(args.a),
               "--b", str(args.b)]  # fmt: skip
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start") from None
            time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["demo", "latency"], default="demo")
    parser.add_argument("--a", type=float, default=0.05, help="latency model: seconds per call")
    parser.add_argument("--b", type=float, default=0.8, help="latency model: seconds per image")
    parser.add_argument("--size", type=int, default=256, help="width and height (default 256)")
    parser.add_argument("--images", type=int, default=32, help="images per measurement (default 32)")
    parser.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    parser.add_argument("--port", type=int, default=7899)
    parser.add_argument("--json", type=Path, default=Path("bench-report.json"))
    parser.add_argument("--server-log", type=Path, help="keep the benchmark server's log here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="zimage-bench-") as tmp:
        workdir = Path(tmp)
        settings = Settings.from_sources([], os.environ)
        settings = replace(settings, output_dir=workdir / "engine", min_size=32).validate()
        if args.serve:
            serve_main(args, replace(settings, output_dir=Path(os.environ["ZIMAGE_OUTPUT_DIR"])))
            return 0
        engine = Engine(build_model(args, settings), settings)
        report: dict[str, Any] = {"model": engine.model.source, "size": args.size, "images": args.images,
                                  "max_batch_size": settings.max_batch_size,
                                  "cross_batching": settings.cross_batching}  # fmt: skip
        report["engine"] = bench_engine(engine, args)
        if args.model == "latency":
            report["engine"]["simulated_gpu_busy_s"] = engine.model.pipe.busy_s  # type: ignore[attr-defined]
        engine.close()
        server = start_server(args, args.port, workdir)
        try:
            report["served"] = bench_served(f"http://127.0.0.1:{args.port}/", args)
        finally:
            server.terminate()
            server.wait(30)
        windows = report["served"].pop("windows", {})
        for name, (start, end) in windows.items():
            report["served"][f"{name}_calls"] = call_stats(workdir / "server.log", start, end)
        if args.server_log:
            shutil.copyfile(workdir / "server.log", args.server_log)
    engine_rate = report["engine"]["batched_images_per_s"]
    served = report["served"]
    report["ratios"] = {
        "served_users_vs_engine_batched": served["users_images_per_s"] / engine_rate,
        "served_box_vs_engine_batched": served["box_images_per_s"] / engine_rate,
        "engine_batched_vs_sequential": engine_rate / report["engine"]["sequential_images_per_s"],
    }
    if args.model == "latency":
        report["ratios"]["served_users_vs_1_over_b"] = served["users_images_per_s"] * args.b
        report["ratios"]["served_users_vs_8_over_a_plus_8b"] = served["users_images_per_s"] * (args.a + 8 * args.b) / 8
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    rows = [("engine, one request per prompt", report["engine"]["sequential_images_per_s"]),
            ("engine, one request with all prompts", engine_rate),
            (f"served, {args.users} users x single prompts", served["users_images_per_s"]),
            ("served, all prompts in one box", served["box_images_per_s"])]  # fmt: skip
    print(f"\n{'measurement':<42}{'images/s':>10}")
    for name, rate in rows:
        print(f"{name:<42}{rate:>10.3f}")
    print(f"request latency p50/p95 s: {served['request_latency_s']['p50']}/{served['request_latency_s']['p95']}; "
          f"/healthz p50/p95 ms: {served['healthz_latency_ms']['p50']:.1f}/{served['healthz_latency_ms']['p95']:.1f}; "
          f"page p50/p95 ms: {served['page_latency_ms']['p50']:.1f}/{served['page_latency_ms']['p95']:.1f}")  # fmt: skip
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
