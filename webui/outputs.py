"""Writing generated images: PNG with the generation parameters inside, atomically.

A file appears under its final name only once it is complete (written to a hidden temporary
file, synced, then hard-linked into place), and an existing file is never overwritten: a
clashing name gets a `-2`, `-3`, ... suffix.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import tempfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# The whole parameter set as JSON, for reading back; each field also gets a text chunk of its
# own so that any PNG viewer shows it.
PARAMETERS_KEY = "zimage-webui"
# zlib settings for PNGs; encoding sits on the throughput path. Measured on a 1024x1024
# photograph here: level 6 (Pillow's default) 539 ms and 1555 KB; level 1 146 ms and 1723 KB;
# level 1 with the run-length strategy (zlib's advice for PNG data) 112 ms and 1557 KB.
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = zlib.Z_RLE


def request_dir(root: Path, request_id: str, started: datetime) -> Path:
    """Where one request's images go: `root/YYYY-MM-DD/HHMMSS-<request id>`."""
    return root / started.strftime("%Y-%m-%d") / f"{started.strftime('%H%M%S')}-{request_id}"


def image_stem(index: int, prompt: str, seed: int) -> str:
    """A readable file name without extension: `007_red-sneaker-front-view_s1234`."""
    return f"{index:03d}_{slugify(prompt)}_s{seed}"


SLUG_BYTES = 48  # longest prompt part of a file name, in bytes of UTF-8


def slugify(text: str, max_bytes: int = SLUG_BYTES) -> str:
    """The words of `text` in any script, lower case, joined by '-': `red-sneaker`, `一只猫`.

    Safe in a file name on any system: letters and digits only (no separators, dots, spaces or
    control characters), and at most `max_bytes` bytes, cut at a word, or within a long one (a
    Chinese sentence has no spaces).
    """
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate.encode()) > max_bytes:
            if not slug:
                slug = word.encode()[:max_bytes].decode(errors="ignore")
            break
        slug = candidate
    return slug or "image"


def save_png(
    image: Image.Image, directory: Path, stem: str, parameters: Mapping[str, Any], *, unique: bool = True
) -> Path:
    """Write `image` as `directory/stem.png` and return the path.

    An existing file is never overwritten: with `unique` the image goes to a free
    `stem-N.png`; without, the file already there is kept (a job's planned name, written by an
    earlier run of the same job: the same image).
    """
    return write_png(encode_png(image, parameters), directory, stem, unique=unique)


def encode_png(image: Image.Image, parameters: Mapping[str, Any]) -> bytes:
    """`image` as PNG bytes with `parameters` inside (a GPU worker sends these to the web host)."""
    info = PngInfo()
    for key, value in parameters.items():
        info.add_itxt(key, str(value))
    info.add_itxt(PARAMETERS_KEY, json.dumps(dict(parameters), ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(
        buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_ZLIB_STRATEGY
    )
    return buffer.getvalue()


def write_png(data: bytes, directory: Path, stem: str, *, unique: bool = True) -> Path:
    """Write encoded PNG `data` as `directory/stem.png`, atomically; `unique` as in save_png."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        path = _link_unique(Path(temporary), directory, stem, unique)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_dir(directory)
    return path


MANIFEST_NAME = "manifest.json"


def write_zip(paths: Sequence[Path], destination: Path) -> Path:
    """Bundle `paths` (by file name) into the zip file `destination`, atomically."""

    def write(handle: BinaryIO) -> None:
        # PNGs are compressed already: storing them is as small and much faster.
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for path in paths:
                archive.write(path, arcname=path.name)

    return replace_atomically(destination, write)


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> Path:
    """What a request asked for and made (for history and reuse), as JSON at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    return replace_atomically(path, lambda handle: handle.write(text))


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST_NAME).read_text("utf-8"))


def replace_atomically(destination: Path, write: Callable[[BinaryIO], Any], mode: int = 0o644) -> Path:
    """Write `destination` through a hidden temporary file that replaces it when complete."""
    fd, temporary = tempfile.mkstemp(prefix=f".{destination.stem}.", suffix=".tmp", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(temporary, mode)
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return destination


def read_png_parameters(path: Path) -> Any:
    """The parameters `save_png` embedded in a PNG (as JSON: check their types), from the text
    chunks before its pixels, which are never decoded, whatever the image's size. KeyError if
    it has none; ValueError for anything else that is not a PNG of ours."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # pixels never decoded
            with Image.open(path, formats=["PNG"]) as image:
                return json.loads(image.info[PARAMETERS_KEY])
    except (Image.DecompressionBombError, RecursionError) as exc:  # too many pixels; JSON nested too deep
        raise ValueError(f"not a PNG of ours: {exc}") from None


def _link_unique(temporary: Path, directory: Path, stem: str, unique: bool) -> Path:
    for attempt in itertools.count(1):
        path = directory / (f"{stem}.png" if attempt == 1 else f"{stem}-{attempt}.png")
        try:
            os.link(temporary, path)
        except FileExistsError:
            if not unique:
                return path
            continue
        return path
    raise AssertionError("unreachable")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(folder: Path) -> int:
    """Delete the hidden temporary files that a killed process left in `folder`; how many."""
    removed = 0
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
