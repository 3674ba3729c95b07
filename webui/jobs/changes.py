"""Something in the queue changed: a counter that async code waits on instead of polling.

The job service bumps it on every change people see (a job accepted, handed over, started, a
step or an image done, ended, moved, the queue paused or resumed), from any thread. Pages,
event streams and OpenAI's answers each await the next bump (with a timeout, so that a
closed page's wait ends) and then read the queue once: an idle server does no work for its
open pages, and a change reaches them at once. `settled` lets a reader that is woken by every
denoising step look at most a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

SETTLE_S = 0.2  # a reader of the whole queue looks at most this often while steps run


class Changes:
    """A version number, bumped on each change; awaitable from any event loop."""

    def __init__(self) -> None:
        self.version = 0
        self._lock = threading.Lock()
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def bump(self) -> None:
        """A change happened (any thread): every waiter wakes."""
        with self._lock:
            self.version += 1
            waiting, self._waiting = self._waiting, set()
        for loop, future in waiting:
            with contextlib.suppress(RuntimeError):  # a loop that has closed meanwhile
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self, seen: int, timeout: float) -> int:
        """The version once it differs from `seen`, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.version != seen:
                return self.version
            future: asyncio.Future[None] = loop.create_future()
            self._waiting.add((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock:
                self._waiting.discard((loop, future))
        return self.version

    async def settled(self, seen: int, timeout: float) -> int:
        """As `wait`, then a short pause that gathers the changes right behind it (a call's
        steps): the version after both."""
        version = await self.wait(seen, timeout)
        if version != seen:
            await asyncio.sleep(SETTLE_S)
        return self.version


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
