"""Twenty users at once against the real server: served or told it is busy, nothing else."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import psutil
from gradio_client import Client

from tests.helpers import server_with_faults

CALL = re.compile(r"^\S+ \S+ INFO webui\.lane\.worker: call of \d+ images", re.M)


def test_twenty_users_are_served_or_told_busy_one_call_at_a_time_with_flat_memory(
    tmp_path: Path, cache_dir: Path
) -> None:
    records = tmp_path / "faults"  # none armed: the server only records its forwards
    with server_with_faults(tmp_path, cache_dir, records, queue_size="8") as server:
        app = psutil.Process(server.process.pid)
        outcomes: Counter[str] = Counter()
        unexpected: list[str] = []
        memory = []
        clients = [Client(server.url, verbose=False, download_files=False) for _ in range(20)]  # pages open

        def user(round_: int, n: int) -> None:
            try:
                gallery, *_ = clients[n].predict(
                    prompts=f"round {round_}, user {n}",
                    images_per_prompt=1,
                    seed=n,
                    width=64,
                    height=64,
                    steps=2,
                    guidance_scale=0.0,
                    api_name="/generate",
                )
                outcomes["served" if len(gallery) == 1 else "short"] += 1
            except Exception as exc:
                if "The queue is full" in str(exc):
                    outcomes["busy"] += 1
                else:
                    unexpected.append(repr(exc))

        for round_ in range(3):
            users = [threading.Thread(target=user, args=(round_, n)) for n in range(20)]
            for thread in users:
                thread.start()
            for thread in users:
                thread.join(120)
            memory.append(app.memory_info().rss)

        assert unexpected == []
        assert outcomes["served"] + outcomes["busy"] == 60 and outcomes["served"] >= 24, outcomes
        # One pipeline call at a time: never two transformer forwards at once in the process.
        assert (records / "most_in_flight").read_text() == "1"
        assert len(CALL.findall(server.log_text())) >= outcomes["served"] / 8  # calls of up to 8
        # Memory flat once warm: the third round adds little over the second.
        assert memory[2] - memory[1] < 64 * 2**20, [m // 2**20 for m in memory]
