"""What tests/test_security.py attacks with: a browser's side of Gradio's queue spoken by hand
(so that any payload can be sent to any event), the payloads that name a planted file, and a
PNG far larger in pixels than in bytes."""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Words of Python's that must never reach a person: exception names, reprs, tracebacks.
PYTHON_WORDING = (
    "Traceback",
    "Error(",
    "Exception",
    "NoneType",
    "object has no attribute",
    "<class",
    "unhashable",
)


def file_data(path: str) -> dict[str, Any]:
    """A FileData as the page sends one for an upload."""
    return {"path": path, "url": None, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def payloads(secret: str) -> dict[str, Any]:
    """Values that name the file `secret` in the shapes an event's inputs take."""
    return {
        "path": secret,
        "file_data": file_data(secret),
        "gallery": [{"image": file_data(secret), "caption": None}, [secret, "caption"]],
        "json": [{"file": secret, "path": secret, "job_id": "0" * 12, "index": 0, "prompt": "x"}],
        "state": {"job_id": secret, "file": secret, "url": f"/gradio_api/file={secret}"},
    }


def event_data(secret: str) -> dict[str, Any]:
    """What a select event carries, naming the file everywhere it can."""
    return {"index": 0, "value": file_data(secret), "row_value": [secret, secret], "selected": True}


@dataclass
class Answer:
    """What an event's call got: the HTTP status of joining, then its messages."""

    status: int
    text: str  # everything the server sent, as text
    messages: list[dict] = field(default_factory=list)

    @property
    def completed(self) -> dict | None:
        return next((m for m in self.messages if m.get("msg") == "process_completed"), None)

    @property
    def error(self) -> str | None:
        done = self.completed
        return None if done is None else (done.get("output") or {}).get("error")


class Tab:
    """One browser tab of the page: its cookies, its session, Gradio's queue by hand."""

    def __init__(self, url: str, **client: Any) -> None:
        self.http = httpx.Client(base_url=url, timeout=60, **client)
        self.session = uuid.uuid4().hex
        self.http.get("/")  # the page: its cookie for uploads

    def login(self, name: str, password: str) -> int:
        return self.http.post("/login", data={"username": name, "password": password}).status_code

    def config(self) -> dict:
        answer = self.http.get("/config")
        answer.raise_for_status()
        return answer.json()

    def events(self) -> list[dict]:
        """The page's events that run on the server."""
        return [d for d in self.config()["dependencies"] if d.get("backend_fn")]

    def event(self, name: str) -> dict:
        return next(d for d in self.events() if d.get("api_name") == name)

    def call(self, dependency: dict, data: list, event_data: Any = None) -> Answer:
        """Join the queue for `dependency` with `data`; its messages until it completes."""
        targets = dependency.get("targets") or [[None]]
        body = {
            "data": data,
            "event_data": event_data,
            "fn_index": dependency["id"],
            "trigger_id": targets[0][0],
            "session_hash": self.session,
        }
        joined = self.http.post("/gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return Answer(joined.status_code, joined.text)
        event_id, texts, messages = joined.json()["event_id"], [], []
        with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": self.session}
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    texts.append(line)
                    message = json.loads(line[5:])
                    messages.append(message)
                    if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                        break
                    # A stream (the Queue panel's) goes on while its page is open: its first
                    # answer is what it gives for these inputs.
                    streaming = (dependency.get("types") or {}).get("generator")
                    if streaming and message.get("msg") == "process_generating":
                        break
        return Answer(200, "\n".join(texts), messages)

    def upload(self, name: str, data: bytes) -> str:
        """Upload a file as the page does; the path Gradio saved it at."""
        answer = self.http.post("/gradio_api/upload", files={"files": (name, data)})
        answer.raise_for_status()
        return answer.json()[0]


def linked_files(value: Any) -> Iterator[str]:
    """The URLs of the files an answer links to, at any depth."""
    if isinstance(value, dict):
        if isinstance(value.get("url"), str):
            yield value["url"]
        for inner in value.values():
            yield from linked_files(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from linked_files(inner)


def huge_png(width: int, height: int, text: dict[str, str]) -> bytes:
    """An RGB PNG of black pixels with `text` in iTXt chunks before them: a few hundred KB
    for hundreds of MB of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + 3 * width)  # filter byte, then the pixels
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    texts = b"".join(
        chunk(b"iTXt", key.encode() + b"\0\0\0\0\0" + value.encode()) for key, value in text.items()
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + texts + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
