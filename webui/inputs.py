"""Input images: checked before any work, and stored once by content hash with the jobs.

A person's upload (a product photo, a cut-out, a reference image) is bytes from a browser or
a client. `read_image` refuses what is not a PNG, JPEG or WebP of sane size before decoding
it (the file size first, then the pixel count from its header, so a decompression bomb is
never decoded). What a job keeps is our own PNG of the prepared image (the cut-out for
product shots), named by the SHA-256 of that PNG: `InputStore.put` writes it before the job
is accepted, so a restart, a kill or another process (a worker) finds the same pixels by hash.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageChops

from webui import product
from webui.request import PRODUCT, VARIATION, RequestError
from webui.settings import Settings
from webui.words import words

logger = logging.getLogger(__name__)

FORMATS = ("PNG", "JPEG", "WEBP")
HASH = re.compile(r"[0-9a-f]{64}")
SWEEP_GRACE_S = 3600  # an input stored this recently may belong to a job being accepted


def read_image(data: bytes, name: str, max_mb: float, max_pixels: int) -> Image.Image:
    """The decoded image in `data` (named `name` in messages); RequestError naming the limit or
    the fix when it is not a PNG, JPEG or WebP within the limits."""
    if len(data) > max_mb * 1e6:
        raise RequestError("input_too_big", name=name, mb=len(data) / 1e6, limit=max_mb)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            kind, (width, height) = image.format, image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):  # Pillow's own limit, met first
        raise RequestError("input_bomb", name=name, limit=max_pixels) from None
    except (OSError, ValueError):
        raise RequestError("not_an_image", name=name) from None
    if kind not in FORMATS:
        raise RequestError("input_format", name=name, format=kind or "?")
    if width * height > max_pixels:
        raise RequestError("input_pixels", name=name, width=width, height=height, limit=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit holds
            image.load()
    except (OSError, ValueError, SyntaxError):
        raise RequestError("not_an_image", name=name) from None
    return image


CUTOUTS = ("auto", "plain")  # how a product is told from its background, besides a mask


def prepare_input(
    kind: str, data: bytes, name: str, settings: Settings, *, mask: bytes | None = None, cutout: str = "auto"
) -> Image.Image:
    """What a job keeps of one upload: for product shots the product's cut-out (RGBA: opaque
    pixels are the product), for variations the image in RGB. RequestError says what is wrong."""
    limits = (settings.max_input_mb, settings.max_input_pixels)
    image = read_image(data, name, *limits)
    if kind == VARIATION:
        if mask is not None:
            raise RequestError("mask_for_variation", name=name)
        return image.convert("RGB")
    if kind != PRODUCT:
        raise RequestError("inputs_for_text", kind=kind)
    if cutout not in CUTOUTS:
        raise RequestError("choice", name=words("name_cutout"), choices=", ".join(CUTOUTS), value=cutout)
    if mask is not None:
        made = product.cutout_from_mask(image, read_image(mask, f"{name} (mask)", *limits))
    elif cutout == "plain":
        made = product.cutout_plain_background(image)
    else:
        made = product.cutout_from_alpha(image)
    product.check_cutout(made)
    return made


def prepare_painted(photo: bytes, layers: list[bytes], name: str, settings: Settings) -> Image.Image:
    """A product's cut-out from a photo and the brush layers painted over it on the page (the
    painted pixels, of any layer, are the product)."""
    limits = (settings.max_input_mb, settings.max_input_pixels)
    image = read_image(photo, name, *limits)
    painted = Image.new("L", image.size, 0)
    for n, layer in enumerate(layers, 1):
        strokes = read_image(layer, f"{name} (brush layer {n})", *limits).convert("RGBA")
        if strokes.size != image.size:
            raise RequestError(
                "mask_size", image="x".join(map(str, image.size)), mask="x".join(map(str, strokes.size))
            )
        painted = ImageChops.lighter(painted, strokes.getchannel("A"))
    made = product.cutout_from_mask(image, painted)
    product.check_cutout(made)
    return made


def input_name(filename: str | None, number: int) -> str:
    """What captions and file names call an input: its file's name without folders or suffix,
    at most 60 characters of printable text (never a path the server opens)."""
    stem = Path((filename or "").replace("\\", "/")).name.rsplit(".", 1)[0] if filename else ""
    stem = "".join(c for c in stem if c.isprintable()).strip()[:60]
    return stem or f"image {number}"


def input_store(state_path: Path) -> InputStore:
    """The input images kept beside the job database."""
    return InputStore(state_path / "inputs")


class InputStore:
    """Prepared input images, one PNG per content hash, in a folder of the state directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, digest: str) -> Path:
        if not HASH.fullmatch(digest):
            raise RequestError("no_input", digest=digest[:16])
        return self.folder / digest[:2] / f"{digest}.png"

    def put(self, image: Image.Image) -> str:
        """Store `image` (as our PNG) and return its hash; on disk, synced, before it returns."""
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return self.put_bytes(buffer.getvalue())

    def put_bytes(self, png: bytes) -> str:
        """Store a PNG made by `put` (here or on another host) under its hash."""
        digest = hashlib.sha256(png).hexdigest()
        path = self.path(digest)
        if path.is_file():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as part:
            part.write(png)
            part.flush()
            os.fsync(part.fileno())
        os.replace(part.name, path)
        return digest

    def has(self, digest: str) -> bool:
        return HASH.fullmatch(digest) is not None and self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        """The stored PNG; RequestError when it is gone (removed by retention, or never here)."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise RequestError("no_input", digest=digest[:16]) from None

    def open(self, digest: str) -> Image.Image:
        image = Image.open(io.BytesIO(self.read(digest)))
        image.load()
        return image

    def sweep(self, keep: Iterable[str]) -> int:
        """Delete stored inputs that no kept job refers to; how many went."""
        kept, removed = set(keep), 0
        recent = time.time() - SWEEP_GRACE_S
        for path in self.folder.glob("*/*.png"):
            if path.stem not in kept and path.stat().st_mtime < recent:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.info("Retention: deleted %d input images no kept job uses", removed)
        return removed
