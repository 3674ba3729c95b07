"""The LoRA library: `.safetensors` files in one folder, looked up by name, read as they are now.

A file added to or removed from the folder is seen at the next look (no restart). A job names
each LoRA by its file name without `.safetensors`; when the job is accepted the name is checked
here and the file's SHA-256 is kept with it, so that the record, the PNGs and "Reuse" can tell
when a file changed. Only a file's header is read to check it (safetensors keeps its tensor
names and shapes there); the weights are read by diffusers' loader in the lane.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.lora_fit import Shapes, check_fit
from webui.request import GenerationRequest, RequestError

SUFFIX = ".safetensors"
HASH = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")  # a file name of the folder, never a path
HEADER_MAX = 100_000_000  # bytes of a safetensors header we read at most


@dataclass(frozen=True)
class LoraFile:
    """One LoRA of the library."""

    name: str
    path: Path
    size: int
    sha256: str
    description: str  # trigger words or description from the file's metadata, if any


class LoraLibrary:
    """The LoRA files of one folder; with the model's layers, each file is checked to fit it.

    `copies` holds files fetched by hash (a GPU worker's copies of the web host's files, named
    `<sha256>.safetensors`): a job's LoRA is found by name in the folder when that version is
    there, else by its hash among the copies.
    """

    def __init__(self, folder: Path, shapes: Shapes | None = None, copies: Path | None = None) -> None:
        self.folder, self.shapes, self.copies = folder, shapes, copies
        self._files: dict[tuple[str, int, int], LoraFile] = {}  # (name, size, mtime) -> the file
        self._fits: dict[tuple[str, str], RequestError | None] = {}  # (name, sha256) -> why not

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name.removesuffix(SUFFIX) for p in self.folder.glob(f"*{SUFFIX}") if p.is_file())

    def entries(self) -> list[dict[str, Any]]:
        """Every file as the API and the page list it; one that cannot be used, with the reason."""
        listed: list[dict[str, Any]] = []
        for name in self.names():
            try:
                found = self.checked(name)
            except RequestError as exc:
                listed.append({"name": name, "error": str(exc)})
                continue
            listed.append(
                {"name": name, "size": found.size, "sha256": found.sha256, "description": found.description}
            )
        return listed

    def get(self, name: str) -> LoraFile:
        """The file of `name`; RequestError naming it when there is none or it is not a LoRA."""
        if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
            raise RequestError("lora_missing", name=str(name)[:60], folder=self.folder)
        path = self.folder / f"{name}{SUFFIX}"
        if not path.is_file() or path.is_symlink():
            raise RequestError("lora_missing", name=name, folder=self.folder)
        stat = path.stat()
        key = (name, stat.st_size, stat.st_mtime_ns)
        found = self._files.get(key)
        if found is None:  # read once per version of the file: then a stat per look
            metadata = _header(path, name).get("__metadata__") or {}
            found = LoraFile(name, path, stat.st_size, _sha256(path), _description(metadata))
            self._files[key] = found
        return found

    def checked(self, name: str) -> LoraFile:
        """The file of `name`, refused by name when it does not fit the model (once per version)."""
        found = self.get(name)
        if self.shapes is not None:
            key = (name, found.sha256)
            if key not in self._fits:
                try:
                    check_fit(found.path, name, self.shapes)
                    self._fits[key] = None
                except RequestError as exc:
                    self._fits[key] = exc
            if (refused := self._fits[key]) is not None:
                raise refused
        return found

    def add(self, source: Path, file_name: str, limit_mb: float) -> LoraFile:
        """An uploaded file added to the folder under its own name: refused (RequestError, by
        name) when that is no name of ours, when it is too large, not safetensors, does not fit
        the model, or a file of that name is there (a changed file would fail queued jobs)."""
        name = file_name.removesuffix(SUFFIX)
        if not file_name.endswith(SUFFIX) or not NAME.fullmatch(name) or ".." in name:
            raise RequestError("lora_file_name", name=file_name[:60])
        size = source.stat().st_size
        if size > limit_mb * 1_000_000:
            raise RequestError("lora_too_large", name=name, size=size / 1e6, limit=limit_mb)
        target = self.folder / file_name
        if target.exists():
            raise RequestError("lora_exists", name=name)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.partial"
        try:
            shutil.copyfile(source, partial)  # checked where it will live: no second copy
            _header(partial, name)
            if self.shapes is not None:
                check_fit(partial, name, self.shapes)
            with open(partial, "rb") as file:
                os.fsync(file.fileno())
            os.link(partial, target)  # fails if a file of that name appeared meanwhile
        except FileExistsError:
            raise RequestError("lora_exists", name=name) from None
        finally:
            partial.unlink(missing_ok=True)
        return self.get(name)

    def path_of(self, name: str, digest: str) -> Path:
        """The file of this version of `name`: the folder's, or a copy fetched by its hash;
        RequestError when neither is that version."""
        copy = self._copy(digest)
        if copy is not None:
            return copy
        found = self.get(name)
        if found.sha256 != digest:
            raise RequestError("lora_changed", name=name)
        return found.path

    def has(self, name: str, digest: str) -> bool:
        try:
            self.path_of(name, digest)
        except RequestError:
            return False
        return True

    def hashes(self) -> list[str]:
        """The SHA-256 of every file here (folder and copies), as a worker reports them."""
        found = {e.sha256 for e in map(self._entry, self.names()) if e is not None}
        if self.copies is not None and self.copies.is_dir():
            found |= {p.name.removesuffix(SUFFIX) for p in self.copies.glob(f"*{SUFFIX}")}
        return sorted(found)

    def keep_copy(self, data: bytes, digest: str) -> None:
        """Keep a fetched file by its hash (checked first), written whole or not at all."""
        if self.copies is None or hashlib.sha256(data).hexdigest() != digest or not HASH.fullmatch(digest):
            raise RequestError("plain", text=f"LoRA file {digest[:16]}... arrived damaged.")
        self.copies.mkdir(parents=True, exist_ok=True)
        partial = self.copies / f".{digest}.{os.getpid()}.{threading.get_ident()}.partial"
        partial.write_bytes(data)
        os.replace(partial, self.copies / f"{digest}{SUFFIX}")

    def _copy(self, digest: str) -> Path | None:
        if self.copies is None or not HASH.fullmatch(digest):
            return None
        path = self.copies / f"{digest}{SUFFIX}"
        return path if path.is_file() else None

    def _entry(self, name: str) -> LoraFile | None:
        try:
            return self.get(name)
        except RequestError:
            return None

    def tensors(self, name: str) -> dict[str, Any]:
        """The tensor names of a LoRA file with their shapes (from its header)."""
        header = _header(self.get(name).path, name)
        return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def _header(path: Path, name: str) -> dict[str, Any]:
    """A safetensors file's JSON header; RequestError when the file is not one."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > HEADER_MAX:
                raise ValueError("header too long")
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        raise RequestError("lora_not_safetensors", name=name) from None
    if not isinstance(header, dict):
        raise RequestError("lora_not_safetensors", name=name)
    return header


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _description(metadata: dict[str, Any]) -> str:
    """Trigger words or a description, from the keys trainers commonly write."""
    for key in (
        "modelspec.trigger_phrase",
        "trigger_words",
        "ss_trigger_words",
        "description",
        "modelspec.description",
    ):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return ""


def with_lora_hashes(request: GenerationRequest, library: LoraLibrary) -> GenerationRequest:
    """The request with each LoRA checked in the library (RequestError naming a missing,
    unreadable or unfitting file) and its file's SHA-256 as it is now, before the job is accepted."""
    if not request.loras:
        return request
    checked = tuple((name, strength, library.checked(name).sha256) for name, strength, *_ in request.loras)
    return dataclasses.replace(request, loras=checked)
