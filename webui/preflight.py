"""Checks that need none of the heavy libraries, run before importing them (about 14 s of
torch, diffusers and gradio on two cores): a taken port or a model folder that is no
pipeline fails in well under a second, also for each of Supervisor's start retries.
"""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

from webui.settings import HUB_MODEL_ID, env_name

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what was tried and what to set."""


class PortInUseError(OSError):
    """The configured port is taken; the message says what to do."""


def check_port_free(host: str, port: int) -> None:
    """Fail early, before the model loads, if another process holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"Port {port} on {host} is already in use (another instance of this app?). "
                f"Stop it, or set {env_name('port')} to a free port."
            ) from None


def local_model_folder(name: str) -> Path | None:
    """The pipeline folder `name` points at, or None for a hub id; ModelLoadError for neither."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{path} has no model_index.json, so it is not a diffusers pipeline folder. "
                f"Point {env_name('model')} at the folder that holds model_index.json "
                f"(e.g. a download of {HUB_MODEL_ID})."
            )
        return path
    if not _HUB_ID.fullmatch(name) or name.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"Model folder {name} does not exist. Set {env_name('model')} to an existing "
            f"folder, a hub id such as {HUB_MODEL_ID}, or demo."
        )
    return None
