"""The benchmark's latency model runs through the real engine and lane."""

from __future__ import annotations

import argparse
import dataclasses

from webui.bench import build_model
from webui.engine import Engine, GenerationRequest
from webui.settings import Settings


def test_the_latency_model_sleeps_per_call_and_returns_real_images(settings: Settings) -> None:
    model = build_model(argparse.Namespace(model="latency", a=0.01, b=0.02), settings)
    engine = Engine(model, dataclasses.replace(settings, max_batch_size=4))
    result = engine.generate(GenerationRequest(["a", "b", "c"], images_per_prompt=2, seed=0, width=96, height=64))
    assert [i.image.size for i in result.images] == [(96, 64)] * 6
    assert [i.seed for i in result.images] == list(range(6))
    assert abs(model.pipe.busy_s - (2 * 0.01 + 6 * 0.02)) < 1e-6  # two calls: 4 + 2 images
    assert all(i.path.is_file() for i in result.images)
