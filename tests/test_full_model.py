"""The full-size architecture, counted on the meta device: no memory, no GPU, no download."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import torch

from tests.helpers import PROJECT
from webui.full_model import build_components
from webui.loading import full_random_pipeline, load_tokenizer
from webui.settings import FULL_RANDOM, Settings


def test_describe_prints_the_parameter_counts_of_the_real_architecture() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webui.bench", "--model", "full-random", "--describe", "--json"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    counts = json.loads(line)
    # The published sizes: transformer 6.15B, Qwen3-4B text encoder 4.02B, VAE 84M.
    assert round(counts["transformer"] / 1e9, 2) == 6.15
    assert round(counts["text_encoder"] / 1e9, 2) == 4.02
    assert round(counts["vae"] / 1e6) == 84


def test_the_components_are_the_classes_the_real_model_loads_made_in_bf16_on_meta() -> None:
    parts = build_components()
    assert {name: type(module).__name__ for name, module in parts.items()} == {
        "transformer": "ZImageTransformer2DModel",
        "text_encoder": "Qwen3Model",
        "vae": "AutoencoderKL",
    }
    for module in parts.values():
        first = next(module.parameters())
        assert first.device.type == "meta" and first.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32  # put back


def test_full_random_is_a_model_setting_with_the_real_pipeline_and_the_demo_tokenizer(
    settings: Settings,
) -> None:
    # What ZIMAGE_MODEL=full-random serves (python -m webui.bench starts the server with it),
    # built here on the meta device: the real classes and sizes, no memory.
    pipe = full_random_pipeline(settings, torch.device("meta"), torch.bfloat16)
    assert type(pipe).__name__ == "ZImagePipeline"
    assert round(sum(p.numel() for p in pipe.transformer.parameters()) / 1e9, 2) == 6.15
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.scheduler.config.shift == 3.0
    tokenizer, label, _, is_demo = load_tokenizer(dataclasses.replace(settings, model=FULL_RANDOM))
    assert (label, is_demo) == ("full-size random model", True)
    assert tokenizer("a red sneaker")["input_ids"] == pipe.tokenizer("a red sneaker")["input_ids"]
