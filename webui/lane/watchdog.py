"""The stall watchdog: notices a pipeline call that stops making progress.

A hung kernel or driver looks, from the process, like a call in which no step finishes. After
`timeout_s` of that the watchdog fails every job in the lane with a message and marks the
lane stalled (new work is refused). If the call comes back within a grace period, the lane
serves again. If not, nothing in this process can free the device: the watchdog calls
`on_stuck`, which the entry point sets (the server exits for Supervisor to start a fresh
process; a library user may do otherwise).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

STALL_GRACE_MAX_S = 30.0
EXIT_STALLED = 70  # EX_SOFTWARE: a pipeline call stalled and never came back


class Watched(Protocol):
    """What the watchdog needs of the lane."""

    closing: bool
    calls_started: int

    def quiet_for(self) -> float: ...

    def fail_all(self, message: str) -> None: ...

    def recovered(self) -> None: ...


def start_watchdog(lane: Watched, timeout_s: float, on_stuck: Callable[[], None] | None) -> threading.Thread:
    thread = threading.Thread(
        target=_watch, args=(lane, timeout_s, on_stuck), name="gpu-watchdog", daemon=True
    )
    thread.start()
    return thread


def _watch(lane: Watched, timeout_s: float, on_stuck: Callable[[], None] | None) -> None:
    while not lane.closing:
        time.sleep(min(1.0, timeout_s / 4))
        if lane.quiet_for() < timeout_s:
            continue
        grace = min(STALL_GRACE_MAX_S, timeout_s)
        logger.error(
            "The pipeline call has made no progress for %.0f s: failing every request and refusing new ones",
            lane.quiet_for(),
        )
        lane.fail_all(
            f"Stopped: the GPU made no progress for {timeout_s:g} s (a stalled call). The server "
            "restarts itself if the device does not recover; try again in a minute."
        )
        stuck, deadline = lane.calls_started, time.monotonic() + grace
        while lane.calls_started == stuck and lane.quiet_for() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if lane.calls_started != stuck or lane.quiet_for() == 0:
            logger.warning("The stalled call came back after all; serving again")
            lane.recovered()
            continue
        logger.critical("The call is still stuck %.0f s later", grace)
        if on_stuck is not None:
            on_stuck()
            return


def exit_for_supervisor() -> None:
    """`on_stuck` of the server and the workers: a stalled call holds the device and cannot be
    interrupted, so only a fresh process frees it. Exit at once (exit() would wait on the stuck
    thread); Supervisor starts a new process, which resumes the jobs."""
    logger.critical("Exiting with status %d so that Supervisor starts a fresh process", EXIT_STALLED)
    logging.shutdown()  # flush the log: os._exit skips it
    os._exit(EXIT_STALLED)
