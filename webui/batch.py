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
from webui.request import API_FIELDS
from webui.settings import Settings, SettingsError, add_arguments, from_namespace

if TYPE_CHECKING:  # the heavy modules load only once the settings are checked
    from webui.engine import Engine, Progress
    from webui.inputs import InputStore
    from webui.request import GenerationRequest

CUTOUTS = ("auto", "plain")  # as webui/inputs.py takes them
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webui.batch",
        allow_abbrev=False,
        description="Generate images for every prompt in a file with Z-Image-Turbo.",
    )
    parser.add_argument("--prompts-file", required=True, type=Path, help="one prompt per line; - for stdin")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs (created if missing)")
    add_request_arguments(parser)
    parser.add_argument(
        "--images",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE_OR_DIR",
        help="input images (PNG, JPEG or WebP; a folder: every such file in it) for --kind "
        "product (transparent PNG cut-outs, or --cutout plain) or variation; each runs every prompt",
    )
    parser.add_argument(
        "--cutout",
        choices=CUTOUTS,
        default="auto",
        help="product shots: auto (the image's transparency) or plain (its plain background removed)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(parser)
    return parser


MODEL_DEFAULTS = ("steps", "guidance_scale")  # flags whose default is the loaded model's


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag per field of the request's table (webui/request.py), with its default and help."""
    for field in API_FIELDS:
        if field.name == "loras":
            parser.add_argument(
                "--lora",
                dest="loras",
                action="append",
                type=lora_argument,
                default=None,
                metavar="NAME[:STRENGTH]",
                help="a LoRA of the library (ZIMAGE_LORA_DIR) and its strength (default 1); up to 4 times",
            )
            continue
        if field.name in ("prompts", "model"):  # the model is the one loaded (--model, a setting)
            continue
        kind = {int: int, float: float}.get(field.type, str)
        choices = field.spec.choices or None
        by_model = field.name in MODEL_DEFAULTS  # None: the loaded model's (Turbo's or base's)
        shown = " (default: the model's)" if by_model else f" (default {field.default})"
        shown = "" if field.default in ("", None) else shown
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None if by_model else field.default,
            choices=choices,
            help=field.spec.help + shown,
        )


def lora_argument(text: str) -> tuple[str, float, str]:
    """`--lora NAME[:STRENGTH]` as the request has it (its hash is filled in at acceptance)."""
    name, _, strength = text.rpartition(":") if ":" in text else (text, "", "1")
    try:
        return name, float(strength), ""
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the strength after ':' must be a number") from None


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
    from webui.inputs import input_store
    from webui.loading import ModelLoadError, load_model
    from webui.models import family_of
    from webui.request import GenerationRequest

    configure_logging(settings.log_level, sys.stderr)  # stdout is for the per-image lines
    store = input_store(settings.state_path)
    try:
        values = {f.name: getattr(args, f.name) for f in API_FIELDS if f.name not in ("prompts", "model")}
        values["loras"] = values["loras"] or ()
        digests, names = store_images(args.images, values["kind"], args.cutout, settings, store)
        engine = Engine(load_model(settings), settings)
        family = family_of(engine.model.label)
        for name, value in {"steps": family.steps, "guidance_scale": family.guidance}.items():
            values[name] = value if values[name] is None else values[name]
        request = GenerationRequest(prompts=prompts, **values, inputs=digests, input_names=names)
        engine.validate(request)  # before the progress bar, so errors read cleanly
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RequestError, OSError) as exc:  # a bad input image, or one that cannot be read
        print(f"error: {exc}", file=sys.stderr)
        return 2

    return _run(engine, request, args, store)


def store_images(
    given: Sequence[Path], kind: str, cutout: str, settings: Settings, store: InputStore
) -> tuple[list[str], list[str]]:
    """The input images named on the command line (folders expanded), checked and stored."""
    from webui.inputs import input_name, prepare_input
    from webui.request import RequestError

    files = [f for path in given for f in (sorted(path.iterdir()) if path.is_dir() else [path])]
    files = [f for f in files if not f.is_dir() and (f.suffix.lower() in IMAGE_SUFFIXES or f in given)]
    if len(files) > settings.max_input_images:
        raise RequestError("too_many_inputs", count=len(files), limit=settings.max_input_images)
    digests = [store.put(prepare_input(kind, f.read_bytes(), f.name, settings, cutout=cutout)) for f in files]
    return digests, [input_name(f.name, n) for n, f in enumerate(files, 1)]


def _run(engine: Engine, request: GenerationRequest, args: argparse.Namespace, store: InputStore) -> int:
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
        record = generate(
            engine, request, on_progress=on_progress, cancel=cancel, output_dir=args.out, inputs=store
        )
    except Exception:
        logger.exception("Generation failed")
        return 1
    finally:
        bar.close()
    for image in record.saved:
        print(f"{image.seed}\t{record.path_of(image)}\t{record.label_of(image)}", flush=True)
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
