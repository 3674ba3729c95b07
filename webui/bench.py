"""The full-size benchmark: the real architecture with random weights, no download.

    python -m webui.bench --model full-random                   (on a GPU: the whole report)
    python -m webui.bench --model full-random --describe --json (anywhere: parameter counts)

It builds Z-Image-Turbo's transformer, text encoder and VAE at full size with random bf16
weights made on the GPU (webui/full_model.py), with the demo tokenizer, and times them through
the same pipeline class and our lane, at 1024x1024 unless told otherwise:
  1. each attention backend that loads: per-image seconds for calls of 1, 2 and 4 images (the
     first call of each apart), peak GPU memory, images made and images blank (random
     weights may give NaN: the work is timed whatever the pixels);
  2. the fastest backend compiled (ZIMAGE_COMPILE): first-call seconds apart, then the same
     figures, and the graphs compiled;
  3. FP8 (ZIMAGE_QUANTIZE=fp8) on top, where torchao and the GPU allow: speed, and how far the
     pixels move from the same images in bf16;
  4. the idle gap between back-to-back calls (jobs of several calls);
  5. the served/engine ratio through the real web server with 8 users (tools/bench.py, run
     with the fastest settings found).
It prints a table and writes a JSON report. `--model demo --device cpu` runs the same code
small, which is what the tests do.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webui import speed
from webui.engine import Engine, ImageTask
from webui.full_model import parameter_counts
from webui.loading import LoadedModel, load_model
from webui.preflight import ModelLoadError
from webui.request import GenerationRequest
from webui.settings import FULL_RANDOM, Settings

# Fast candidates, the default (PyTorch SDPA) first; a backend whose package is missing is
# reported as such. `_native_math` (the slow reference) is left out.
BACKENDS = "default,_native_cudnn,_native_flash,_native_efficient,flash,_flash_3,flash_varlen,sage,xformers"
PROMPT = "product shot {n}: a {colour} sneaker on a white seamless background, studio lighting"
COLOURS = ["red", "navy", "olive", "black", "white", "tan", "grey", "teal"]


class Bench:
    """One loaded model and the measurements made on it."""

    def __init__(self, model: LoadedModel, settings: Settings, args: argparse.Namespace) -> None:
        self.model, self.settings, self.args = model, settings, args
        self.cuda = model.device.type == "cuda"
        self.prompts = 0  # fresh prompt texts: every call encodes its prompts, as in real use

    def engine(self, backend: str, **changes: Any) -> Engine:
        """An engine (its own lane) on the shared model, with `backend` set on the transformer."""
        speed.set_attention_backend(self.model.pipe.transformer, backend)
        return Engine(self.model, replace(self.settings, attention_backend=backend, **changes))

    def job(self, engine: Engine, count: int) -> tuple[float, int, int, list[torch.Tensor]]:
        """One request of `count` images: seconds, images made, images blank, and their pixels."""
        texts = [PROMPT.format(n=self.prompts + n, colour=COLOURS[n % 8]) for n in range(count)]
        self.prompts += count
        size = self.args.size
        request = GenerationRequest(texts, seed=1, width=size, height=size)
        tasks = [ImageTask(n, text, 1 + n) for n, text in enumerate(texts)]
        pixels: dict[int, torch.Tensor] = {}
        keep = threading.Lock()

        def on_image(task: ImageTask, image: Any) -> None:
            with keep:
                pixels[task.index] = torch.from_numpy(np.asarray(image))

        started = time.perf_counter()
        outcome = engine.run(request, tasks, on_image=on_image, label="bench")
        seconds = time.perf_counter() - started
        return seconds, len(outcome.made), len(outcome.black), [pixels[n] for n in sorted(pixels)]

    def batches(self, engine: Engine) -> dict[str, Any]:
        """Per batch size: the first call apart, then the median of the repeats, per image."""
        rows: dict[str, Any] = {}
        for batch in self.args.batches:
            self.reset_peak()
            first, made, blank, _ = self.job(engine, batch)
            times = []
            for _ in range(self.args.repeats):
                seconds, m, b, _ = self.job(engine, batch)
                times.append(seconds)
                made, blank = made + m, blank + b
            rows[str(batch)] = {
                "first_call_s": round(first, 3),
                "per_image_s": round(statistics.median(times) / batch, 4),
                "calls_s": [round(t, 3) for t in times],
                "peak_memory_gib": self.peak(),
                "images_made": made,
                "images_blank": blank,
            }
        return rows

    def backends(self) -> list[dict[str, Any]]:
        results = []
        for name in self.args.backends:
            say(f"eager, attention backend {name}")
            try:
                engine = self.engine(name)
                try:
                    results.append({"backend": name, "batches": self.batches(engine)})
                finally:
                    engine.close()
            except Exception as exc:  # a missing package, or a kernel that does not run here
                results.append({"backend": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
        return results

    def compiled(self, backend: str) -> dict[str, Any]:
        from torch._dynamo.utils import counters

        say(f"compiled, attention backend {backend}")
        engine = self.engine(backend)
        speed.compile_transformer(self.model.pipe.transformer)
        try:
            result = {"backend": backend, "batches": self.batches(engine)}
        finally:
            engine.close()
        result["graphs"] = counters["stats"]["unique_graphs"]
        return result

    def fp8(self, backend: str) -> dict[str, Any]:
        problem = speed.fp8_problem(self.model.device)
        if problem:
            return {"skipped": problem}
        say("FP8 (torchao float8 dynamic quantization of the transformer's linear layers)")
        engine = self.engine(backend)
        try:
            self.prompts = 0  # the same prompts and seeds before and after
            _, _, _, before = self.job(engine, 2)
            speed.quantize_fp8(self.model.pipe.transformer, self.model.device)
            self.prompts = 0
            _, _, _, after = self.job(engine, 2)
            result = {"batches": self.batches(engine)}
        finally:
            engine.close()
        moved = [(a.float() - b.float()).abs().mean().item() for a, b in zip(after, before, strict=False)]
        result["pixels_moved_mean_of_255"] = round(statistics.mean(moved), 3) if moved else None
        return result

    def idle_gap(self, backend: str) -> dict[str, Any]:
        """Jobs of several calls each: the lane's gaps between back-to-back calls."""
        say("idle gap between back-to-back calls")
        batch = max(self.args.batches)
        engine = self.engine(backend, max_batch_size=batch)
        try:
            for _ in range(self.args.repeats):
                self.job(engine, batch * 4)
            return engine.stats.gap_summary()
        finally:
            engine.close()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.model.device)

    def peak(self) -> float | None:
        if not self.cuda:
            return None
        return round(torch.cuda.max_memory_allocated(self.model.device) / 2**30, 2)


def fastest(rows: list[dict[str, Any]], batch: int) -> tuple[str, float] | None:
    """The backend with the least per-image time for calls of `batch` images."""
    timed = [(r["backend"], r["batches"][str(batch)]["per_image_s"]) for r in rows if "batches" in r]
    return min(timed, key=lambda row: row[1]) if timed else None


def served(args: argparse.Namespace, backend: str, compile_: bool) -> dict[str, Any]:
    """tools/bench.py with the chosen settings: 8 users through the real web server, and the
    engine alone, side by side. It loads its own two models: this process's is freed first."""
    say(f"served: {args.users} users through the web server (tools/bench.py)")
    with tempfile.TemporaryDirectory(prefix="zimage-bench-full-") as tmp:
        report = Path(tmp) / "served.json"
        env = {
            **os.environ,
            "ZIMAGE_ATTENTION_BACKEND": backend,
            "ZIMAGE_COMPILE": str(compile_).lower(),
            "ZIMAGE_DEVICE": args.device,
            "ZIMAGE_MAX_BATCH_SIZE": str(max(args.batches)),
        }
        command = [sys.executable, "-m", "tools.bench", "--model", args.model, "--size", str(args.size)]
        command += ["--images", str(args.served_images), "--users", str(args.users), "--rounds", "1"]
        command += ["--port", str(args.port), "--json", str(report)]
        project = Path(__file__).resolve().parents[1]  # tools/ lies beside webui/
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        result = json.loads(report.read_text())
    ratios = {name: round(ratio["median"], 3) for name, ratio in result["ratios"].items()}
    gap = result["served"]["box_calls"][-1]["idle_gap"]  # the server's, after a box of prompts
    return {"backend": backend, "compile": compile_, "ratios": ratios, "idle_gap": gap, "report": result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_sources(
        [], {**os.environ, "ZIMAGE_MODEL": args.model, "ZIMAGE_DEVICE": args.device}
    )
    # Compile and FP8 are measured as steps of their own, whatever the environment says.
    settings = replace(
        settings, min_size=16, max_batch_size=max(args.batches), compile=False, quantize="none"
    )
    settings = settings.validate()
    started = time.perf_counter()
    model = load_model(settings)
    report: dict[str, Any] = {
        "model": model.label,
        "device": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "cpu",
        "dtype": str(model.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "size": args.size,
        "steps": 8,
        "load_s": round(time.perf_counter() - started, 1),
        "parameters": {n: sum(p.numel() for p in getattr(model.pipe, n).parameters()) for n in PARTS},
    }
    bench, largest = Bench(model, settings, args), max(args.batches)
    report["eager"] = bench.backends()
    best = fastest(report["eager"], largest)
    if best is None:
        raise SystemExit("No attention backend ran; see the errors in the report.")
    backend, eager_s = best
    report["fastest_eager_backend"] = backend
    compile_wins = False
    if args.compile:
        report["compiled"] = bench.compiled(backend)
        compiled_s = report["compiled"]["batches"][str(largest)]["per_image_s"]
        compile_wins = compiled_s < eager_s
    report["idle_gap"] = bench.idle_gap(backend)
    report["fp8"] = bench.fp8(backend) if args.fp8 else {"skipped": "--no-fp8"}
    report["recommended"] = {"ZIMAGE_ATTENTION_BACKEND": backend, "ZIMAGE_COMPILE": compile_wins}
    del bench, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if args.users:
        report["served"] = served(args, backend, compile_wins)
    return report


PARTS = ("transformer", "text_encoder", "vae")


def print_table(report: dict[str, Any]) -> None:
    size = f"{report['size']}x{report['size']}"
    print(f"\n{report['model']} on {report['device']}, {size}, {report['steps']} steps")
    print(f"{'':<28}{'images/call':>12}{'s/image':>10}{'first call s':>14}{'peak GiB':>10}{'made/blank':>12}")
    rows = [(f"eager {r['backend']}", r) for r in report["eager"]]
    if "compiled" in report:
        rows.append((f"compiled {report['compiled']['backend']}", report["compiled"]))
    if "batches" in report["fp8"]:
        rows.append(("fp8 (compiled)" if "compiled" in report else "fp8", report["fp8"]))
    for name, row in rows:
        if "error" in row:
            print(f"{name:<28}  not run: {row['error'][:80]}")
            continue
        for batch, b in row["batches"].items():
            memory = "-" if b["peak_memory_gib"] is None else b["peak_memory_gib"]
            made = f"{b['images_made']}/{b['images_blank']}"
            print(f"{name:<28}{batch:>12}{b['per_image_s']:>10}{b['first_call_s']:>14}{memory:>10}{made:>12}")
    print(f"idle gap between calls: {report['idle_gap']}")
    print(f"fp8: {report['fp8'].get('skipped') or report['fp8'].get('pixels_moved_mean_of_255')}")
    served = report.get("served")
    if served:
        print(f"served: {served.get('ratios') or served.get('error')}; idle gap {served.get('idle_gap')}")
    print(f"recommended: {report['recommended']}")


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[FULL_RANDOM, "demo"], required=True)
    parser.add_argument("--describe", action="store_true", help="parameter counts only, on the meta device")
    parser.add_argument(
        "--json", nargs="?", const="-", help="--describe: one JSON line; else the report file"
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--size", type=int, default=1024, help="width and height (default 1024)")
    parser.add_argument("--batches", type=lambda t: [int(n) for n in t.split(",")], default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (default 3)")
    parser.add_argument("--backends", type=lambda t: t.split(","), default=BACKENDS.split(","))
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-fp8", dest="fp8", action="store_false")
    parser.add_argument("--users", type=int, default=8, help="served: concurrent users; 0 skips it")
    parser.add_argument("--served-images", type=int, default=16, help="served: images per measurement")
    parser.add_argument("--port", type=int, default=7899, help="served: the web server's port (loopback)")
    args = parser.parse_args(argv)
    if args.describe:
        counts = parameter_counts()
        if args.json:
            print(json.dumps(counts))
        else:
            for name, count in counts.items():
                print(f"{name}: {count / 1e9:.2f}B parameters")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        report = run(args)
    except ModelLoadError as exc:
        print(exc, file=sys.stderr)
        return 3
    target = Path(args.json if args.json not in (None, "-") else "bench-full.json")
    target.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"report: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
