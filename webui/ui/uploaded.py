"""The page's input images: what Generate's images section sent, read and prepared.

Each file an event names is opened through `open_upload`, which returns the path only once
the upload gate shows it is this page's own upload (webui/ui/page.py: Page.upload); a name a
browser sent is never a path opened otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from webui.inputs import CUTOUTS, HASH, InputStore, input_name, prepare_input, prepare_painted
from webui.request import KINDS, PRODUCT, TEXT, RequestError
from webui.settings import Settings

Opener = Callable[[Any], Path]  # an upload's path, or gr.Error when it is not this page's
MAX_LAYERS = 4  # brush layers of the painted photo (the editor makes one)


def stored_inputs(
    values: Mapping[str, Any], settings: Settings, store: InputStore, open_upload: Opener
) -> tuple[list[str], list[str]]:
    """The job's inputs: reused ones, then each upload prepared for its kind and stored by hash.
    "Prompts only" takes none: images left in the section are not the job's."""
    if values.get("kind") not in KINDS or values.get("kind") == TEXT:
        return [], []
    digests, names = reused_inputs(values.get("reused"), settings)
    files = values.get("images")
    uploads = len(files) if isinstance(files, list) else 0
    if len(digests) + uploads > settings.max_input_images:  # before any upload is read
        raise RequestError("too_many_inputs", count=len(digests) + uploads, limit=settings.max_input_images)
    for image, name in read_uploads(values, settings, open_upload):
        digests.append(store.put(image))
        names.append(name)
    if len(digests) > settings.max_input_images:
        raise RequestError("too_many_inputs", count=len(digests), limit=settings.max_input_images)
    return digests, names


def reused_inputs(reused: Any, settings: Settings) -> tuple[list[str], list[str]]:
    """The inputs a reuse brought back, as (hash, name) pairs: on the page a server-side State,
    but a script's `/submit` may send them too, so each is checked (a stored input's hash, a
    name made safe as an upload's is). Any job's inputs may be reused, as History shows any
    job; a hash cannot be guessed, only read from a job or its PNGs."""
    if reused is None:
        return [], []
    if not isinstance(reused, list) or len(reused) > settings.max_input_images:
        raise RequestError("reused_invalid")
    digests, names = [], []
    for n, entry in enumerate(reused, 1):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise RequestError("reused_invalid")
        if not HASH.fullmatch(entry[0]):
            raise RequestError("reused_invalid")
        digests.append(entry[0])
        names.append(input_name(entry[1] if isinstance(entry[1], str) else None, n))
    return digests, names


def read_uploads(
    values: Mapping[str, Any], settings: Settings, open_upload: Opener
) -> list[tuple[Image.Image, str]]:
    """Each uploaded image (and the painted photo), read and prepared for the job's kind."""
    kind, cutout = values.get("kind"), values.get("cutout")
    cutout = cutout if cutout in CUTOUTS else "auto"
    files = values.get("images") or []
    if not isinstance(files, list):
        raise RequestError("not_an_upload")
    if len(files) > settings.max_input_images:  # before any is read
        raise RequestError("too_many_inputs", count=len(files), limit=settings.max_input_images)
    kind = kind if kind in KINDS else TEXT
    made = []
    for n, file in enumerate(files, 1):
        name = input_name(file.get("orig_name") if isinstance(file, dict) else None, n)
        data = _read(open_upload(_path(file)), name, settings)
        made.append((prepare_input(kind, data, name, settings, cutout=cutout), name))
    painted = values.get("painted")
    if kind == PRODUCT and isinstance(painted, dict) and painted.get("background"):
        background, layers = painted["background"], painted.get("layers") or []
        if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
            raise RequestError("painted_layers", limit=MAX_LAYERS)
        name = input_name(
            background.get("orig_name") if isinstance(background, dict) else None, len(made) + 1
        )
        photo = _read(open_upload(_path(background)), name, settings)
        strokes = [_read(open_upload(_path(layer)), name, settings) for layer in layers]
        made.append((prepare_painted(photo, strokes, name, settings), name))
    return made


def _read(path: Path, name: str, settings: Settings) -> bytes:
    """An upload's bytes, its size checked first."""
    size = path.stat().st_size
    if size > settings.max_input_mb * 1e6:
        raise RequestError("input_too_big", name=name, mb=size / 1e6, limit=settings.max_input_mb)
    return path.read_bytes()


def _path(file: Any) -> Any:
    """The path a FileData names (what Gradio sends with preprocessing off)."""
    return file.get("path") if isinstance(file, dict) else file
