"""Files people upload through the page: the only files whose names a browser may send.

Gradio saves an upload in its upload folder and answers with the saved path; the page then
sends that path back, as a FileData, in the event that uses the file, and Gradio copies or
even downloads whatever a FileData names before any handler runs. So a path in an event is
taken for what it is, data from a browser, and checked at the door:

- `UploadGate` (ASGI) remembers who uploaded each file Gradio saved: the person (with a
  login on) and the browser (a cookie this gate sets on the page). Any other POST to Gradio's
  routes whose JSON names any other path, as a FileData or a bare `path` at any depth, is
  refused with 400 before Gradio reads it; so is a body too deep or too large to walk.
  Gradio's routes that this app does not use are closed (`CLOSED_ROUTES`).
- `Uploads.path()` is what a handler calls for an upload input: the same rule again, and the
  file still a plain file inside the upload folder. A handler's owner is
  `(request.username, request.cookies.get(PAGE_COOKIE))`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.access import Access
from webui.words import words

PAGE_COOKIE = "zimage-page"  # one browser's uploads, with or without a login
GRADIO_ROUTES = "/gradio_api/"
UPLOAD_ROUTE = "/gradio_api/upload"
# Closed: routes that replace a queued event's inputs (`/stream/`) or take recordings, which
# nothing here uses, and Gradio's direct and curl-style routes: every event of the page is
# queued, the page and gradio_client speak `/queue/join`, crafted calls to these end in 500s,
# and the REST API does their work better.
CLOSED_ROUTES = (
    "/gradio_api/stream/",
    "/gradio_api/process_recording",
    "/gradio_api/call/",
    "/gradio_api/run/",
    "/gradio_api/api/",
)
MAX_NODES = 100_000  # lists and objects in one event's body; the page's largest holds hundreds
Owner = tuple[str | None, str | None]  # (person, browser)


class Uploads:
    """Who uploaded which file, for as long as Gradio keeps it."""

    def __init__(self, access: Access, max_age_s: float) -> None:
        self.access, self.max_age_s = access, max_age_s
        self._owners: dict[str, tuple[Owner, float]] = {}
        self._lock = threading.Lock()

    def owner(self, cookies: dict[str, str]) -> Owner:
        return self.access.session_user(cookies), cookies.get(PAGE_COOKIE)

    def remember(self, paths: list[str], owner: Owner) -> None:
        now = time.monotonic()
        with self._lock:
            for path in paths:
                self._owners[path] = (owner, now)
            for path in [p for p, (_, made) in self._owners.items() if now - made > self.max_age_s]:
                del self._owners[path]

    def allowed(self, path: Any, owner: Owner) -> bool:
        """Whether `path` is a file that `owner` uploaded (and Gradio still keeps)."""
        with self._lock:
            entry = self._owners.get(path) if isinstance(path, str) else None
        return entry is not None and entry[0] == owner and time.monotonic() - entry[1] <= self.max_age_s

    def path(self, file: Any, owner: Owner) -> Path | None:
        """The upload an event's input names, once it is shown to be one of `owner`'s and still
        a plain file inside the upload folder; None otherwise, the file unopened."""
        if not self.allowed(file, owner):
            return None
        path = Path(file)
        folder = Path(get_upload_folder()).resolve()
        if path.is_symlink() or not path.resolve().is_relative_to(folder) or not path.is_file():
            return None
        return path


def named_paths(value: Any) -> list[Any] | None:
    """Every `path` a value holds, at any depth: FileData, or anything shaped like one. None
    when the value holds more than MAX_NODES lists and objects (no event needs so many)."""
    found, pending, seen = [], [value], 0
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if "path" in item:
                found.append(item["path"])
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            continue
        seen += 1
        if seen > MAX_NODES:
            return None
    return found


def _event_paths(body: bytes) -> list[Any] | None:
    """The paths an event's body names (`named_paths`), but not in its `event_data`."""
    try:
        sent = json.loads(body)
        return named_paths({**sent, "event_data": None} if isinstance(sent, dict) else sent)
    except RecursionError:
        return None  # nested past what Python's JSON reader follows
    except ValueError:
        return []  # not JSON: Gradio refuses it itself, and reads no file from it


class UploadGate:
    """ASGI middleware: remembers uploads, refuses events naming any other file, and gives
    each browser the cookie its uploads are known by. An upload's body may reach the body
    limit's upload bound (an admin adding a LoRA file) only for an admin; anyone else's stops
    at `limit` bytes (413)."""

    def __init__(self, app: ASGIApp, uploads: Uploads, limit: int) -> None:
        self.app, self.uploads, self.limit = app, uploads, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, cookies = scope["path"], HTTPConnection(scope).cookies
        if scope["method"] == "POST" and path.rstrip("/") == UPLOAD_ROUTE:
            owner = self.uploads.owner(cookies)
            if self.uploads.access.is_admin(owner[0]):
                await self._upload(scope, receive, send, owner)
            else:
                from webui.http_guard import BodyLimit  # here: it imports this module

                async def upload(scope: Scope, receive: Receive, send: Send) -> None:
                    await self._upload(scope, receive, send, owner)

                await BodyLimit(upload, self.limit, self.limit)(scope, receive, send)
        elif scope["method"] == "POST" and path.startswith(CLOSED_ROUTES):
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
        elif scope["method"] == "POST" and path.startswith(GRADIO_ROUTES):
            await self._event(scope, receive, send, self.uploads.owner(cookies))
        elif scope["method"] == "GET" and path == "/" and PAGE_COOKIE not in cookies:
            await self.app(scope, receive, _with_cookie(send))
        else:
            await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, owner: Owner) -> None:
        """Gradio's answer (the saved paths) is read on its way out; it goes out uncompressed."""
        scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"accept-encoding"])
        status, body = 0, bytearray()

        async def reading_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body") and status == 200:
                    saved = json.loads(body)
                    paths = saved if isinstance(saved, list) else []
                    self.uploads.remember([p for p in paths if isinstance(p, str)], owner)
            await send(message)

        await self.app(scope, receive, reading_send)

    async def _event(self, scope: Scope, receive: Receive, send: Send, owner: Owner) -> None:
        """The body, read whole (the body limit came first) and handed on unchanged, unless it
        names a file that is not the caller's upload. The whole body is walked, not only
        `data` (any route may read files from any field), save an event's `event_data`: what
        a gallery or table click says was clicked, which names the shown images' cached
        files. Gradio opens none of it (it checks such paths lie in its cache) and our
        handlers read only the index and row from it."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # A big body (a long prompt box) is read off the event loop.
        paths = await asyncio.to_thread(_event_paths, body) if len(body) > 65536 else _event_paths(body)
        if paths is None or any(not self.uploads.allowed(p, owner) for p in paths):
            answer = {"detail": words("not_an_upload").say()}
            await JSONResponse(answer, status_code=400)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _with_cookie(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{PAGE_COOKIE}={secrets.token_hex(16)}; Path=/; HttpOnly; SameSite=Strict"
            MutableHeaders(scope=message).append("set-cookie", cookie)
        await send(message)

    return sending
