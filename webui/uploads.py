"""Files people upload through the page: the only files whose names a browser may send.

Gradio saves an upload in its upload folder and answers with the saved path; the page then
sends that path back, as a FileData, in the event that uses the file, and Gradio copies or
even downloads whatever a FileData names before any handler runs. So a path in an event is
taken for what it is, data from a browser, and checked at the door:

- `UploadGate` (ASGI) remembers who uploaded each file Gradio saved: the person (with a
  login on) and the browser (a cookie this gate sets on the page). An event that names any
  other path in its inputs, as a FileData or a bare `path`, is refused with 400 before Gradio
  reads it.
- `Uploads.path()` is what a handler calls for an upload input: the same rule again, and the
  file still a plain file inside the upload folder. A handler's owner is
  `(request.username, request.cookies.get(PAGE_COOKIE))`.
"""

from __future__ import annotations

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
UPLOAD_ROUTE = "/gradio_api/upload"
# Gradio's routes that run events: their bodies' `data` are the events' inputs.
EVENT_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/")
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


def named_paths(value: Any) -> list[Any]:
    """Every `path` a value holds, at any depth: FileData, or anything shaped like one."""
    if isinstance(value, dict):
        found = [value["path"]] if "path" in value else []
        return found + [p for v in value.values() for p in named_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in named_paths(v)]
    return []


class UploadGate:
    """ASGI middleware: remembers uploads, refuses events naming any other file, and gives
    each browser the cookie its uploads are known by."""

    def __init__(self, app: ASGIApp, uploads: Uploads) -> None:
        self.app, self.uploads = app, uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, cookies = scope["path"], HTTPConnection(scope).cookies
        if scope["method"] == "POST" and path.rstrip("/") == UPLOAD_ROUTE:
            await self._upload(scope, receive, send, self.uploads.owner(cookies))
        elif scope["method"] == "POST" and path.startswith(EVENT_ROUTES):
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
                    self.uploads.remember([p for p in saved if isinstance(p, str)], owner)
            await send(message)

        await self.app(scope, receive, reading_send)

    async def _event(self, scope: Scope, receive: Receive, send: Send, owner: Owner) -> None:
        """The event's body, read whole (the body limit came first) and handed on unchanged,
        unless its inputs name a file that is not the caller's upload."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            inputs = json.loads(body).get("data")
        except (ValueError, AttributeError):
            inputs = None  # not JSON: Gradio refuses it itself
        if any(not self.uploads.allowed(p, owner) for p in named_paths(inputs)):
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
