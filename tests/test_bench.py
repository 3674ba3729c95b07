"""The benchmark's latency model runs through the real engine and lane."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import PROJECT, free_port, make
from tools.bench import build_model
from webui.engine import Engine
from webui.request import GenerationRequest
from webui.settings import Settings


def test_the_latency_model_sleeps_per_call_and_returns_real_images(settings: Settings) -> None:
    model = build_model(argparse.Namespace(model="latency", a=0.01, b=0.02), settings)
    engine = Engine(model, dataclasses.replace(settings, max_batch_size=4))
    result = make(
        engine, GenerationRequest(["a", "b", "c"], images_per_prompt=2, seed=0, width=96, height=64)
    )
    assert [i.image.size for i in result.images] == [(96, 64)] * 6
    assert [i.seed for i in result.images] == list(range(6))
    assert abs(model.pipe.busy_s - (2 * 0.01 + 6 * 0.02)) < 1e-6  # two calls: 4 + 2 images
    assert all(i.path.is_file() for i in result.images)


def test_the_benchmark_runs_side_by_side_rounds_and_reports_them(tmp_path: Path, cache_dir: Path) -> None:
    report_file = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "HF_HUB_OFFLINE": "1",
        "ZIMAGE_CACHE_DIR": str(cache_dir),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--model",
            "latency",
            "--a",
            "0.01",
            "--b",
            "0.02",
            "--size",
            "64",
            "--images",
            "8",
            "--users",
            "4",
            "--rounds",
            "2",
            "--port",
            str(free_port()),
            "--json",
            str(report_file),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert len(report["engine"]["batched_images_per_s"]) == len(report["served"]["users_images_per_s"]) == 2
    # The server's call counters (/healthz) account for every image of each phase: 4 users x 2 requests, and
    # the box of 8 in two full calls of the default max batch size 4.
    for users, box in zip(report["served"]["users_calls"], report["served"]["box_calls"], strict=True):
        assert round(users["calls"] * users["images_per_call"]) == 8
        assert (box["calls"], box["images_per_call"]) == (2, 4)
    assert report["served"]["request_latency_s"]["n"] == 16
    assert (
        report["served"]["healthz_latency_ms"]["p95"] > 0 and report["served"]["page_latency_ms"]["p95"] > 0
    )
    ratio = report["ratios"]["served_users_vs_engine_batched"]
    assert len(ratio["per_round"]) == 2 and ratio["median"] == sum(ratio["per_round"]) / 2
    assert "served_users_vs_1_over_b" in report["ratios"]
    assert "served, 4 users x single prompts" in done.stdout
