"""Pause, resume or drain the queue of a server on this machine, from its folder.

    python -m webui.queue status
    python -m webui.queue pause
    python -m webui.queue resume
    python -m webui.queue drain [--timeout S]   (./launch.sh drain)

It writes the pause to the state folder's queue.json, which the server looks at once a second
(webui/jobs/control.py): shell access to the server's folder is the right to use it, no login
is needed. `drain` pauses, then follows /healthz until the server has seen the pause and no
pipeline call runs, saying what it waits for; then a restart loses no work (jobs left queued
resume after it, their finished images kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from webui.jobs.control import QueueControl
from webui.settings import Settings, SettingsError

BY = "the command line"
LOOK_S = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.queue", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("status", "pause", "resume", "drain"))
    parser.add_argument("--timeout", type=float, default=3600, help="drain: seconds at most (3600)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_sources([], os.environ).validate()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    control = QueueControl(settings.state_path)
    url = f"http://{_probe_host(settings.host)}:{settings.port}/healthz"
    if args.command == "pause":
        paused = control.pause(BY)
        print(f"Paused by {paused.by} since {paused.since:%Y-%m-%d %H:%M:%S} UTC: running calls finish.")
    elif args.command == "resume":
        control.resume(BY)
        print("Resumed: the queue goes on.")
    elif args.command == "status":
        paused = control.paused()
        print("Not paused." if paused is None else f"Paused by {paused.by} since {paused.since:%H:%M} UTC.")
        health = _health(url)
        print(json.dumps(health, indent=2) if health else f"No server answers at {url}.")
    else:
        return drain(control, url, args.timeout)
    return 0


def drain(control: QueueControl, url: str, timeout: float) -> int:
    """Pause, then wait until the server saw it and no call runs; 1 on timeout."""
    control.pause(BY)
    deadline, said = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        health = _health(url)
        if health is None:
            print(f"No server answers at {url}: nothing runs. The queue stays paused for its next start.")
            return 0
        if health.get("paused") and not health.get("call_running"):
            print(
                f"Drained: no pipeline call runs ({health.get('jobs_queued', 0)} jobs queued, "
                f"{health.get('jobs_running', 0)} in progress, kept). A restart now loses no work; "
                "`python -m webui.queue resume` goes on."
            )
            return 0
        now = "waiting for the server to see the pause" if not health.get("paused") else _running(health)
        if now != said:
            print(now, flush=True)
            said = now
        time.sleep(LOOK_S)
    print(f"A call still runs after {timeout:.0f} s; the queue stays paused.", file=sys.stderr)
    return 1


def _running(health: dict[str, Any]) -> str:
    quiet = health.get("call_quiet_s")
    since = f" (last step {quiet} s ago)" if quiet else ""
    return f"waiting for the running pipeline call to finish{since}"


def _health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as answer:  # 503 (stalled, broker away) still says how it stands
        try:
            return json.load(answer)
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


if __name__ == "__main__":
    sys.exit(main())
