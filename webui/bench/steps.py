"""The steps of the full-size benchmark (webui/bench/__main__.py): each attention backend eager,
compiled, FP8, the idle gap between calls, and the served comparison (tools/bench.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
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
from PIL import Image

from webui import speed
from webui.engine import Engine, ImageTask, Start
from webui.loading import LoadedModel
from webui.product import place
from webui.request import PRODUCT, TEXT, VARIATION, GenerationRequest, steps_run
from webui.settings import DEFAULT_STEPS, Settings

# Fast candidates, the default (PyTorch SDPA) first; a backend whose package is missing is
# reported as such. `_native_math` (the slow reference) is left out.
BACKENDS = "default,_native_cudnn,_native_flash,_native_efficient,flash,_flash_3,flash_varlen,sage,xformers"
# One caption bucket (52-53 tokens for any n): calls never need an attention mask, so the
# mask-free backends time the same calls as the others.
PROMPT = (
    "product shot {n:05d}: a leather sneaker on a white seamless background, soft studio lighting, "
    "front view, sharp focus, high detail"
)


class Bench:
    """One loaded model and the measurements made on it."""

    def __init__(self, model: LoadedModel, settings: Settings, args: argparse.Namespace) -> None:
        self.model, self.settings, self.args = model, settings, args
        self.cuda = model.device.type == "cuda"
        self.prompts = 0  # fresh prompt texts: every call encodes its prompts, as in real use
        self.compiled_ = False  # the transformer's blocks are compiled (the compiled step ran)

    def engine(self, backend: str, **changes: Any) -> Engine:
        """An engine (its own lane) on the shared model, with `backend` set on the transformer."""
        speed.set_attention_backend(self.model.pipe.transformer, backend)
        return Engine(self.model, replace(self.settings, attention_backend=backend, **changes))

    def job(
        self, engine: Engine, count: int, kind: str = TEXT, start: Start | None = None
    ) -> tuple[float, int, int, dict[int, torch.Tensor]]:
        """One request of `count` images (of `kind`, each starting from `start`): seconds,
        images made, images blank, and the pixels of those made, by index."""
        texts = [PROMPT.format(n=self.prompts + n) for n in range(count)]
        self.prompts += count
        size = self.args.size
        request = GenerationRequest(texts, seed=1, width=size, height=size, kind=kind)
        tasks = [ImageTask(n, text, 1 + n, start) for n, text in enumerate(texts)]
        pixels: dict[int, torch.Tensor] = {}
        keep = threading.Lock()

        def on_image(task: ImageTask, image: Any) -> None:
            with keep:
                pixels[task.index] = torch.from_numpy(np.asarray(image))

        started = time.perf_counter()
        outcome = engine.run(request, tasks, on_image=on_image, label="bench")
        seconds = time.perf_counter() - started
        return seconds, len(outcome.made), len(outcome.black), pixels

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
        self.compiled_ = True
        return result

    def fp8(self, backend: str) -> dict[str, Any]:
        problem = speed.fp8_problem(self.model.device)
        if problem:
            return {"skipped": problem}
        from torch._dynamo.utils import counters

        say("FP8 (torchao float8 dynamic quantization of the transformer's linear layers)")
        engine = self.engine(backend)
        try:
            self.prompts = 0  # the same prompts and seeds before and after
            _, _, _, before = self.job(engine, 2)
            if self.compiled_:  # float8 weights fail every guard: compile afresh, not past the limit
                torch._dynamo.reset()
            speed.quantize_fp8(self.model.pipe.transformer, self.model.device)
            self.prompts = 0
            _, _, _, after = self.job(engine, 2)
            result = {"compiled": self.compiled_, "batches": self.batches(engine)}
        finally:
            engine.close()
        moved = [(after[n].float() - before[n].float()).abs().mean().item() for n in after if n in before]
        result["pixels_moved_mean_of_255"] = round(statistics.mean(moved), 3) if moved else None
        result["graphs"] = counters["stats"]["unique_graphs"]
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

    def kinds(self, backend: str) -> dict[str, Any]:
        """Calls of each kind side by side, in rounds (text, variation, product, then again), at
        the same size and batch: what starting from an image (its encoding, the mask) costs."""
        say("kinds of call: text, variation (strength 0.6), product in scene")
        batch, size = max(self.args.batches), self.args.size
        engine = self.engine(backend, max_batch_size=batch)
        noise = Image.effect_noise((size, size), 64).convert("RGB")
        cutout = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        cutout.paste(Image.new("RGBA", (size // 3, size // 2), (180, 40, 40, 255)), (size // 3, size // 4))
        placed = place(cutout, size, size)
        starts = {TEXT: None, VARIATION: Start(noise), PRODUCT: Start(placed.canvas, placed.generate)}
        times: dict[str, list[float]] = {kind: [] for kind in starts}
        try:
            for _ in range(self.args.repeats + 1):  # the first round warms each kind's pipeline
                for kind, start in starts.items():
                    seconds, *_ = self.job(engine, batch, kind=kind, start=start)
                    times[kind].append(seconds)
        finally:
            engine.close()
        rows = {}
        for kind, seconds in times.items():
            run = steps_run(kind, DEFAULT_STEPS, 0.6)
            per_image = statistics.median(seconds[1:]) / batch
            rows[kind] = {
                "steps_run": run,
                "per_image_s": round(per_image, 4),
                "images_per_s": round(1 / per_image, 3),
                "per_image_step_s": round(per_image / run, 4),
            }
        text = rows[TEXT]["per_image_step_s"]
        for row in rows.values():  # per denoising step, against text calls measured in the same rounds
            row["step_cost_vs_text"] = round(row["per_image_step_s"] / text, 3)
        return {"batch": batch, "size": size, "kinds": rows}

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
            "ZIMAGE_QUANTIZE": "none",
            "ZIMAGE_DEVICE": args.device,
            "ZIMAGE_MAX_BATCH_SIZE": str(max(args.batches)),
        }
        command = [sys.executable, "-m", "tools.bench", "--model", args.model, "--size", str(args.size)]
        command += ["--images", str(args.served_images), "--users", str(args.users), "--rounds", "1"]
        command += ["--port", str(args.port), "--json", str(report)]
        project = Path(__file__).resolve().parents[2]  # tools/ lies beside webui/
        # A session of its own: on a timeout its server and users go with it, freeing the GPU.
        process = subprocess.Popen(
            command, cwd=project, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, errors = process.communicate(timeout=args.served_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return {"error": f"tools.bench did not finish in {args.served_timeout} s"}
        if process.returncode != 0:
            return {"error": errors[-2000:]}
        result = json.loads(report.read_text())
    ratios = {name: round(ratio["median"], 3) for name, ratio in result["ratios"].items()}
    gap = result["served"]["box_calls"][-1]["idle_gap"]  # the server's, after a box of prompts
    return {"backend": backend, "compile": compile_, "ratios": ratios, "idle_gap": gap, "report": result}


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
