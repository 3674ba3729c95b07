"""Open pages do not hold up a restart.

Every open page keeps a few GET responses streaming for as long as it is open: Gradio's
heartbeat, the queue's event stream, our REST event streams. uvicorn's graceful shutdown waits
for responses to finish, so with one page open a restart waited its whole grace (10 s) and
then cancelled them with a traceback. Here a streaming GET hears that its client went away
shortly after the shutdown begins: Starlette's StreamingResponse and Gradio's streams stop on
that as they do for a closed tab, and the response is then ended properly, so uvicorn closes
the connection at once. Responses of a declared length (downloads) are never cut. The short
delay lets what is already on its way out (a page told that the server is restarting) go
first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STREAMS_END_S = 2.0  # after the shutdown begins, streams hear a disconnect
DISCONNECT: Message = {"type": "http.disconnect"}


class Shutdown:
    """The server's shutdown, begun from any thread (the signal handler), awaited in its loop."""

    def __init__(self) -> None:
        # Re-entrant: begin() runs in a signal handler, on the loop's thread, which may be inside
        # ended() at that moment.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: asyncio.Future[None] | None = None
        self._begun = False

    def begin(self) -> None:
        """Streaming responses end STREAMS_END_S from now."""
        with self._lock:
            self._begun = True
            loop, ended = self._loop, self._ended
        if loop is not None and ended is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(loop.call_later, STREAMS_END_S, _finish, ended)

    def ended(self) -> asyncio.Future[None]:
        """Done once streams are to end (made in the running loop on first use)."""
        with self._lock:
            if self._ended is None:
                self._loop = asyncio.get_running_loop()
                self._ended = self._loop.create_future()
                if self._begun:
                    self._ended.set_result(None)
            return self._ended


class EndStreamsOnShutdown:
    """Pure ASGI middleware: a streaming GET's `receive` also returns a disconnect once streams
    end."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app, self.shutdown = app, shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        ended = self.shutdown.ended()
        # Done once the shutdown has begun and this response is a stream: started without a
        # Content-Length. Downloads of a known size are never cut (they finish within the grace).
        cut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        streaming = False

        def maybe_cut(_: object = None) -> None:
            if streaming and ended.done() and not cut.done():
                cut.set_result(None)

        ended.add_done_callback(maybe_cut)
        # One receive at a time is outstanding, shared by the response's disconnect listener and
        # Gradio's polls. `is_disconnected` asks in a cancelled scope: its wait ends at once but
        # the receive carries on, and a later poll that finds it done answers without waiting.
        pending: asyncio.Future[Message] | None = None
        gone, complete = False, False

        async def receive_until_shutdown() -> Message:
            nonlocal pending, gone
            if gone or cut.done():
                return DISCONNECT
            task = pending = pending or asyncio.ensure_future(receive())
            if not task.done():
                await asyncio.wait((task, cut), return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    return DISCONNECT
            if pending is task:
                pending = None
            message = task.result()
            gone = gone or message["type"] == "http.disconnect"
            return message

        async def watching_send(message: Message) -> None:
            nonlocal streaming, complete
            await send(message)
            if message["type"] == "http.response.start":
                streaming = not any(k.lower() == b"content-length" for k, _ in message.get("headers", ()))
                maybe_cut()
            complete = message["type"] == "http.response.body" and not message.get("more_body", False)

        try:
            await self.app(scope, receive_until_shutdown, watching_send)
            if cut.done() and not complete and not gone:  # a stream cut by the shutdown: end it
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            ended.remove_done_callback(maybe_cut)
            if pending is not None:
                pending.cancel()


def _finish(ended: asyncio.Future[None]) -> None:
    if not ended.done():
        ended.set_result(None)
