"""Command-line batch mode: the same engine as the WebUI, for scripts and cron jobs.

    python -m webui.batch --prompts-file prompts.txt --out renders/ [--images-per-prompt 4]

One prompt per line (blank lines and `#` lines skipped; `-` reads standard input). A
progress bar goes to stderr; stdout gets one line per image: seed, path and prompt,
tab-separated. Ctrl-C stops at the next step and keeps the finished images.

Exit status: 0 done, 1 model or generation failure, 2 bad input or settings, 130 stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from webui.log import configure_logging
from webui.prompts import TemplateError, parse_prompts
from webui.settings import (
    DEFAULT_GUIDANCE,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    SEED_PER_IMAGE,
    SEED_POLICIES,
    SettingsError,
    add_arguments,
    from_namespace,
)

if TYPE_CHECKING:  # the heavy modules load only once the settings are checked
    from webui.engine import Engine, Progress
    from webui.request import GenerationRequest

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webui.batch",
        allow_abbrev=False,
        description="Generate images for every prompt in a file with Z-Image-Turbo.",
    )
    parser.add_argument("--prompts-file", required=True, type=Path, help="one prompt per line; - for stdin")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs (created if missing)")
    parser.add_argument("--images-per-prompt", type=int, default=1, help="variants per prompt (default 1)")
    parser.add_argument("--seed", type=int, default=-1, help="base seed; -1: random")
    parser.add_argument(
        "--seed-policy",
        choices=SEED_POLICIES,
        default=SEED_PER_IMAGE,
        help="per-image (default): image k gets seed+k; per-variant: variant j of every "
        "prompt gets seed+j, so the set differs only by prompt",
    )
    parser.add_argument("--style", default="", help="appended to every prompt after ', '")
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE, help=f"default {DEFAULT_SIZE}")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE, help=f"default {DEFAULT_SIZE}")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"default {DEFAULT_STEPS}")
    parser.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE, help="default 0 (Turbo)")
    parser.add_argument("--negative-prompt", default="", help="used only when guidance scale > 0")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = from_namespace(args, os.environ)
        text = sys.stdin.read() if str(args.prompts_file) == "-" else args.prompts_file.read_text("utf-8")
        prompts = parse_prompts(text, limit=settings.max_prompts)
    except (SettingsError, OSError, UnicodeDecodeError, TemplateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Heavy imports after the settings check, so a typo fails in a blink.
    from webui.engine import Engine, RequestError
    from webui.loading import ModelLoadError, load_model
    from webui.request import GenerationRequest

    configure_logging(settings.log_level, sys.stderr)  # stdout is for the per-image lines
    request = GenerationRequest(
        prompts=prompts,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        width=args.width,
        height=args.height,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
        style=args.style,
        seed_policy=args.seed_policy,
    )
    try:
        engine = Engine(load_model(settings), settings)
        engine.validate(request)  # before the progress bar, so errors read cleanly
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    return _run(engine, request, args)


def _run(engine: Engine, request: GenerationRequest, args: argparse.Namespace) -> int:
    """Generate with a progress bar on stderr, one line per image on stdout; the exit status."""
    from tqdm import tqdm

    from webui.jobs.execute import generate
    from webui.jobs.record import STOPPED

    cancel = threading.Event()
    _stop_on_signals(cancel)
    bar = tqdm(total=request.image_count * request.steps, unit="step", disable=args.quiet, file=sys.stderr)

    def on_progress(progress: Progress) -> None:
        bar.set_description(
            f"images {progress.images_done + 1}-"
            f"{progress.images_done + progress.chunk_images} of {progress.images_total}"
        )
        bar.update(progress.images_done * progress.steps + progress.chunk_images * progress.step - bar.n)

    try:
        record = generate(engine, request, on_progress=on_progress, cancel=cancel, output_dir=args.out)
    except Exception:
        logger.exception("Generation failed")
        return 1
    finally:
        bar.close()
    for image in record.saved:
        print(f"{image.seed}\t{record.path_of(image)}\t{record.prompt_of(image)}", flush=True)
    note = " (demo model: random weights, the images are noise)" if record.demo else ""
    seeds = f"{record.images[0].seed}..{record.images[-1].seed}"
    print(
        f"{len(record.saved)} of {len(record.images)} images in {record.elapsed_s:.1f} s, seeds {seeds}, "
        f"in {record.folder}{note}",
        file=sys.stderr,
    )
    if record.status == STOPPED:
        print("stopped early; the images above are complete", file=sys.stderr)
        return 130
    return 0


def _stop_on_signals(cancel: threading.Event) -> None:
    """First Ctrl-C or SIGTERM: stop at the next step. A second Ctrl-C: stop at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            signal.default_int_handler(signum, frame)
        cancel.set()
        print("\nstopping after the current step...", file=sys.stderr)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


if __name__ == "__main__":
    sys.exit(main())
