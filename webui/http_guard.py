"""What every HTTP request passes before the app sees it: the name it was sent to, the size of
its body, and the headers every answer carries.

- `allowed_hosts`: the names the server answers to, for Starlette's TrustedHostMiddleware. A
  page on another site cannot reach the server through a name of its own that resolves to
  127.0.0.1 (DNS rebinding), which matters most when no login is on.
- `BodyLimit`: a body larger than `ZIMAGE_MAX_REQUEST_MB` gets 413 without being read: at
  once when its Content-Length says so, else as soon as the bytes that arrived pass the
  limit. Uploads have a limit of their own, above Gradio's per-file `max_file_size`.
- `SecurityHeaders`: no page of ours in another site's frame, no content-type guessing.
"""

from __future__ import annotations

import ipaddress
import socket

import psutil
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webui.settings import Settings, env_name

UPLOAD_ROUTE = "/gradio_api/upload"  # Gradio's upload route
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
}


def allowed_hosts(settings: Settings) -> list[str]:
    """The names a request's Host may give: the bind address, localhost, this machine's names
    and addresses, and the setting's names."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    if not _is_any_address(settings.host):
        names.add(settings.host)
    for addresses in psutil.net_if_addrs().values():
        ip = (socket.AF_INET, socket.AF_INET6)
        names.update(a.address.split("%")[0] for a in addresses if a.family in ip)  # "%eth0": IPv6 scope
    return sorted(names | set(settings.extra_hosts))


def _is_any_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


IMAGE_ROUTES = ("/api/v1/jobs", "/v1/images/edits")  # bodies that may carry input images


class BodyLimit:
    """413 for a request body over its limit, before it is read whole: `limit` bytes, or
    `upload_limit` on Gradio's upload route (where Gradio's per-file limit also applies), or
    `image_limit` on the API routes that take input images (each image also has its own)."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, image_limit: int | None = None) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit
        self.image_limit = image_limit or limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        limit = (
            self.upload_limit
            if path == UPLOAD_ROUTE
            else self.image_limit
            if path in IMAGE_ROUTES
            else self.limit
        )
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            await PlainTextResponse("Content-Length is not a number.", 400)(scope, receive, send)
        elif declared is not None and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
        else:
            # Counted even when a Content-Length was declared: a request that also says
            # `Transfer-Encoding: chunked` is read chunked, whatever its length said.
            await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The app reads the body through a counter; past the limit the app is told the client
        left, and the client gets 413 instead of the app's answer."""
        received, refused, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                refused = True
                if not started:
                    await self._refuse(scope, receive, send, limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already
            started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        megabytes = limit / 1_000_000
        setting = "" if limit == self.upload_limit else f" ({env_name('max_request_mb')})"
        message = f"The request body is over {megabytes:g} MB{setting}."
        await PlainTextResponse(message, 413, headers={"connection": "close"})(scope, receive, send)


class SecurityHeaders:
    """Headers every HTTP answer carries (those the app set itself are kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
