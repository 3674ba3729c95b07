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

from webui.inputs import CUTOUTS, InputStore, input_name, prepare_input, prepare_painted
from webui.request import KINDS, TEXT, RequestError
from webui.settings import Settings

Opener = Callable[[Any], Path]  # an upload's path, or gr.Error when it is not this page's


def stored_inputs(
    values: Mapping[str, Any], settings: Settings, store: InputStore, open_upload: Opener
) -> tuple[list[str], list[str]]:
    """The job's inputs: reused ones, then each upload prepared for its kind and stored by hash."""
    reused = values.get("reused") or []
    digests = [d for d, _ in reused if isinstance(d, str)]
    names = [n for _, n in reused if isinstance(n, str)]
    for image, name in read_uploads(values, settings, open_upload):
        digests.append(store.put(image))
        names.append(name)
    if len(digests) > settings.max_input_images:
        raise RequestError("too_many_inputs", count=len(digests), limit=settings.max_input_images)
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
        data = open_upload(_path(file)).read_bytes()
        made.append((prepare_input(kind, data, name, settings, cutout=cutout), name))
    painted = values.get("painted")
    if isinstance(painted, dict) and painted.get("background"):
        background = painted["background"]
        name = input_name(
            background.get("orig_name") if isinstance(background, dict) else None, len(made) + 1
        )
        photo = open_upload(_path(background)).read_bytes()
        layers = [open_upload(_path(layer)).read_bytes() for layer in painted.get("layers") or []]
        made.append((prepare_painted(photo, layers, name, settings), name))
    return made


def _path(file: Any) -> Any:
    """The path a FileData names (what Gradio sends with preprocessing off)."""
    return file.get("path") if isinstance(file, dict) else file
