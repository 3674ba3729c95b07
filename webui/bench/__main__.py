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
  4b. calls of each kind (text, variation at strength 0.6, product in scene) side by side, in
     rounds: images/s, and per denoising step against text (what starting from an image costs);
  4c. LoRAs (two files made with PEFT over the loaded transformer): seconds of a file's first
     load, milliseconds of a switch between two loaded sets and back to none, and images/s of a
     queue mixing the two sets against one set, in rounds (webui/bench/loras_step.py);
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
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from webui.bench.loras_step import measure_loras
from webui.bench.steps import BACKENDS, Bench, fastest, served
from webui.full_model import parameter_counts
from webui.loading import load_model
from webui.preflight import ModelLoadError
from webui.settings import FULL_RANDOM, Settings


def run(args: argparse.Namespace, target: Path) -> dict[str, Any]:
    """Every step in turn; the report is written after each, and a step that fails is recorded
    with its error, so that a long run cut short still leaves its figures."""
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
        "parameters": parameter_counts({name: getattr(model.pipe, name) for name in PARTS}),
    }

    def step(name: str, measure: Callable[[], Any]) -> Any:
        try:
            report[name] = measure()
        except Exception as exc:  # recorded; the next steps still run
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        target.write_text(json.dumps(report, indent=2))
        return report[name]

    bench, largest = Bench(model, settings, args), max(args.batches)
    best = fastest(step("eager", bench.backends), largest)
    if best is None:
        raise SystemExit(f"No attention backend ran; see the errors in {target}.")
    backend, eager_s = best
    report["fastest_eager_backend"] = backend
    compiled = step("compiled", partial(bench.compiled, backend)) if args.compile else {}
    compile_wins = "batches" in compiled and compiled["batches"][str(largest)]["per_image_s"] < eager_s
    report["recommended"] = {"ZIMAGE_ATTENTION_BACKEND": backend, "ZIMAGE_COMPILE": compile_wins}
    step("idle_gap", partial(bench.idle_gap, backend))
    step("kinds", partial(bench.kinds, backend))
    step("loras", partial(measure_loras, bench, backend))
    step("fp8", partial(bench.fp8, backend) if args.fp8 else partial(dict, skipped="--no-fp8"))
    del bench, model
    step("memory_left_gib", free_memory)
    if args.users:
        step("served", lambda: served(args, backend, compile_wins))
    return report


def free_memory() -> float | None:
    """Release this process's model before the served step loads two more: the lanes' threads
    end within a second of closing, compiled code holds references until Dynamo is reset."""
    torch._dynamo.reset()
    time.sleep(1.5)
    gc.collect()
    if not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    return round(torch.cuda.memory_reserved() / 2**30, 2)


PARTS = ("transformer", "text_encoder", "vae")


def print_table(report: dict[str, Any]) -> None:
    size = f"{report['size']}x{report['size']}"
    print(f"\n{report['model']} on {report['device']}, {size}, {report['steps']} steps")
    print(f"{'':<28}{'images/call':>12}{'s/image':>10}{'first call s':>14}{'peak GiB':>10}{'made/blank':>12}")
    rows = [(f"eager {r['backend']}", r) for r in report["eager"]]
    if "compiled" in report:
        rows.append((f"compiled {report['fastest_eager_backend']}", report["compiled"]))
    if "batches" in report["fp8"]:
        rows.append(("fp8 (compiled)" if report["fp8"]["compiled"] else "fp8", report["fp8"]))
    for name, row in rows:
        if "error" in row:
            print(f"{name:<28}  not run: {row['error'][:80]}")
            continue
        for batch, b in row["batches"].items():
            memory = "-" if b["peak_memory_gib"] is None else b["peak_memory_gib"]
            made = f"{b['images_made']}/{b['images_blank']}"
            print(f"{name:<28}{batch:>12}{b['per_image_s']:>10}{b['first_call_s']:>14}{memory:>10}{made:>12}")
    print(f"idle gap between calls: {report['idle_gap']}")
    kinds = report.get("kinds", {})
    for kind, row in kinds.get("kinds", {}).items():
        print(
            f"{kind:<10} {row['images_per_s']:>8} images/s  {row['steps_run']} steps run  "
            f"per step x{row['step_cost_vs_text']} of text"
        )
    if "error" in kinds:
        print(f"kinds: not run: {kinds['error'][:80]}")
    print_loras(report.get("loras", {}))
    print(f"fp8: {report['fp8'].get('skipped') or report['fp8'].get('pixels_moved_mean_of_255')}")
    served = report.get("served")
    if served:
        print(f"served: {served.get('ratios') or served.get('error')}; idle gap {served.get('idle_gap')}")
    print(f"recommended: {report['recommended']}")


def print_loras(loras: dict[str, Any]) -> None:
    if "error" in loras:
        print(f"loras: not run: {loras['error'][:80]}")
    if "queue" not in loras:
        return
    print(
        f"loras: first load {loras['load_first_s']} s (a second file {loras['load_second_s']} s), "
        f"switch {loras['switch_ms']} ms, set again {loras['stay_ms']} ms, to none {loras['to_none_ms']} ms"
    )
    mixed, one = loras["queue"]["mixed"], loras["queue"]["one_set"]
    print(
        f"loras: two sets mixed {mixed['images_per_s']} images/s ({mixed['set_changes']} set changes in "
        f"{mixed['calls']} calls), one set {one['images_per_s']}: x{loras['mixed_vs_one_set']}"
    )


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=[FULL_RANDOM, "demo"], required=True, help="full-random: full size, random weights"
    )
    parser.add_argument("--describe", action="store_true", help="parameter counts only, on the meta device")
    parser.add_argument(
        "--json", nargs="?", const="-", help="--describe: one JSON line; else the report (bench-full.json)"
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--size", type=int, default=1024, help="width and height (default 1024)")
    parser.add_argument("--batches", type=numbers, default=[1, 2, 4], help="images per call (default 1,2,4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (default 3)")
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        default=BACKENDS.split(","),
        help=f"comma-separated ({BACKENDS})",
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled step")
    parser.add_argument("--no-fp8", dest="fp8", action="store_false", help="skip the FP8 step")
    parser.add_argument(
        "--users", type=int, default=8, help="served: concurrent users (default 8; 0 skips it)"
    )
    parser.add_argument("--served-images", type=int, default=16, help="served: images per measurement")
    parser.add_argument("--port", type=int, default=7899, help="served: the web server's port (loopback)")
    parser.add_argument("--served-timeout", type=int, default=1800, help="served: seconds at most (1800)")
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
    target = Path(args.json if args.json not in (None, "-") else "bench-full.json")
    try:
        report = run(args, target)
    except ModelLoadError as exc:
        print(exc, file=sys.stderr)
        return 3
    print_table(report)
    print(f"report: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
