"""The GPU path exercised on the CPU: bf16 end to end, torch.compile with its warm-up, tiled
VAE decoding at 2048x2048, the FP8 setting's refusal, and the idle gap between calls."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from tests.helpers import PROJECT, free_port, make
from webui.engine import Engine
from webui.lane.calls import PipelineCalls, to_pixels
from webui.loading import LoadedModel, load_model
from webui.preflight import ModelLoadError
from webui.request import GenerationRequest
from webui.settings import Settings, SettingsError


def pixels(result) -> np.ndarray:
    return np.stack([np.asarray(image.image, dtype=np.float32) for image in result.images])


def test_bf16_end_to_end_on_the_cpu_is_close_to_fp32_and_not_black(settings: Settings) -> None:
    request = GenerationRequest(["a red sneaker", "a blue mug"], seed=5, width=128, height=128)
    images = {}
    for dtype in ("fp32", "bf16"):
        changed = dataclasses.replace(settings, dtype=dtype, device="cpu")
        model = load_model(changed)
        assert model.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)
        assert model.pipe.transformer.dtype == model.dtype and model.pipe.vae.dtype == model.dtype
        images[dtype] = pixels(make(Engine(model, changed), request))
    bf16, fp32 = images["bf16"], images["fp32"]
    assert bf16.shape == (2, 128, 128, 3)
    assert bf16.std() > 20 and bf16.max() > 0  # a picture, not black or flat
    # Measured: 0.4/255 on average, at most 6/255; two different images differ by about 32/255.
    assert np.abs(bf16 - fp32).mean() < 2
    assert np.abs(bf16 - fp32).max() < 32
    assert np.abs(fp32[0] - fp32[1]).mean() > 10


def test_compile_warms_up_at_start_and_then_serves_other_batches_and_prompts_without_compiling(
    settings: Settings, demo_model: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    # ZIMAGE_COMPILE on the demo model: about 40 s of compiling on two cores, at start-up.
    compiled = dataclasses.replace(settings, compile=True, device="cpu")
    counters.clear()
    with caplog.at_level(logging.INFO, logger="webui.engine"):
        engine = Engine(load_model(compiled), compiled)
    assert "Warmed up the compiled transformer" in caplog.text
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0  # it did compile: a batch of 1, then one graph with dynamic sizes
    eager = Engine(demo_model, settings)
    # Warmed up at 1024x1024 with 1 and 2 images: other batch sizes, captions and sizes, and
    # captions of different lengths in one call (an attention mask).
    for prompts, size in (
        (["a red sneaker", "a blue mug", "a green hat"], 1024),
        (["a very long prompt " * 25, "a short one"], 512),
        (["a very long prompt " * 40], 256),
        (["x"] * 4, 256),
    ):
        request = GenerationRequest(prompts, seed=3, width=size, height=size, steps=2)
        result = make(engine, request)
        assert counters["stats"]["unique_graphs"] == graphs, f"recompiled for {len(prompts)} at {size}"
        same = pixels(make(eager, request))
        assert np.abs(pixels(result) - same).max() <= 1  # the compiled model's pixels, within 1/255


def test_large_images_are_decoded_in_tiles_without_seams(demo_model: LoadedModel) -> None:
    latents = torch.randn(1, 16, 256, 256, generator=torch.Generator().manual_seed(7))  # 2048x2048
    decoder_calls = []
    hook = demo_model.pipe.vae.decoder.register_forward_hook(lambda *_: decoder_calls.append(1))
    try:
        whole = to_pixels(PipelineCalls(demo_model, tiling_above_mp=100).decode(latents)[0]).float()
        assert len(decoder_calls) == 1
        tiled = to_pixels(PipelineCalls(demo_model).decode(latents)[0]).float()  # above 1.5 MP
        assert len(decoder_calls) == 1 + 9  # 3x3 overlapping tiles of 1024 pixels
    finally:
        hook.remove()
    assert tiled.shape == whole.shape == (2048, 2048, 3)
    difference = (tiled - whole).abs()
    assert 0 < difference.mean() < 2  # measured 0.6/255: only the blended borders differ
    # No seams: the step between neighbouring columns (and rows) of the tiled image is, for
    # every column, what it is in the whole image (measured: at most 1.2% larger).
    for axis in (0, 1):
        step_tiled = tiled.diff(dim=axis).abs().mean(dim=(1 - axis, 2))
        step_whole = whole.diff(dim=axis).abs().mean(dim=(1 - axis, 2))
        assert (step_tiled / step_whole).max() < 1.05


def test_fp8_is_refused_with_the_reason_where_it_cannot_run(settings: Settings) -> None:
    with pytest.raises(ModelLoadError, match=r"ZIMAGE_QUANTIZE=fp8: float8 .* need a CUDA GPU"):
        load_model(dataclasses.replace(settings, quantize="fp8", device="cpu"))
    with pytest.raises(SettingsError, match="ZIMAGE_QUANTIZE"):
        dataclasses.replace(settings, quantize="int4").validate()


def test_the_idle_gap_between_back_to_back_calls_is_measured(make_engine) -> None:
    engine = make_engine(max_batch_size=2)
    make(engine, GenerationRequest([f"prompt {n}" for n in range(6)], seed=1, width=32, height=32, steps=2))
    gaps = engine.stats.gap_summary()
    assert gaps["n"] == 2  # three calls of two images: two gaps while work waited
    assert 0 < gaps["between_calls_p50_ms"] < gaps["p50_ms"] < 1000
    assert gaps["prompt_encoding_p50_ms"] > 0  # each call's prompts were new


def test_the_full_size_benchmark_runs_on_the_demo_model_and_reports(tmp_path: Path, cache_dir: Path) -> None:
    # `python -m webui.bench --model full-random` on a GPU; the same code, small, on the CPU.
    report_file = tmp_path / "report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZIMAGE_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "webui.bench", "--model", "demo", "--device", "cpu", "--size", "64"]
    command += ["--batches", "1,2", "--repeats", "2", "--backends", "default,native,flash", "--no-compile"]
    command += [
        "--users",
        "2",
        "--served-images",
        "4",
        "--port",
        str(free_port()),
        "--json",
        str(report_file),
    ]
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    default, native, flash = report["eager"]
    for row in (default, native):
        for batch in ("1", "2"):
            timed = row["batches"][batch]
            assert timed["images_made"] + timed["images_blank"] == 3 * int(batch)  # first call + 2
            assert timed["per_image_s"] > 0 and len(timed["calls_s"]) == 2
    assert "flash" in flash["error"]  # not installed here: reported, not fatal
    assert report["fastest_eager_backend"] in ("default", "native")
    assert report["idle_gap"]["n"] > 0
    kinds = report["kinds"]["kinds"]  # each kind of call timed in the same rounds
    assert set(kinds) == {"text", "variation", "product"}, report["kinds"]
    assert [kinds[k]["steps_run"] for k in ("text", "variation", "product")] == [
        8,
        5,
        8,
    ]  # 8 x 0.6 = 4.8: the first 3 skipped, as diffusers does
    assert kinds["text"]["step_cost_vs_text"] == 1.0 and all(k["images_per_s"] > 0 for k in kinds.values())
    loras = report["loras"]  # two LoRA files made in the step: loading, switching, mixed queues
    assert loras["load_first_s"] > 0 and loras["load_second_s"] > 0, loras
    assert all(loras[f"{name}_ms"] > 0 for name in ("from_none", "stay", "switch", "to_none"))
    mixed, one_set = loras["queue"]["mixed"], loras["queue"]["one_set"]
    assert mixed["images_per_s"] > 0 and one_set["images_per_s"] > 0
    # 4 jobs of 2 images in calls of 2: the lane puts A's jobs in calls together, then B's.
    assert (mixed["calls"], mixed["set_changes"], one_set["set_changes"]) == (4, 1, 0)
    assert loras["mixed_vs_one_set"] > 0 and len(loras["ratios"]) == 2  # a round per repeat
    assert "loras: two sets mixed" in done.stdout
    assert "CUDA" in report["fp8"]["skipped"]
    assert "ratios" in report["served"], report["served"]  # else the error of the served step
    assert set(report["served"]["ratios"]) >= {"served_users_vs_engine_batched"}
    assert report["served"]["idle_gap"]["n"] >= 1  # the box of 4 ran as calls of 2 in the server
    assert report["parameters"]["transformer"] > 0
    assert "eager default" in done.stdout and "recommended" in done.stdout


def test_cached_prompt_embeddings_hold_no_autograd_history(demo_model: LoadedModel) -> None:
    # encode_prompt runs outside torch.no_grad: the cache would keep the text encoder's
    # activations of every prompt alive (on a GPU, hundreds of MB per call of the real model).
    [embedding] = PipelineCalls(demo_model).embed(["a red sneaker"])
    assert not embedding.requires_grad and embedding.grad_fn is None


def test_the_next_calls_prompts_are_encoded_while_a_call_runs(make_engine) -> None:
    # On a GPU the lane encodes the next call's prompts on a thread (and CUDA stream) of its
    # own; forced on here. Calls of 2 images at 256x256 take about 0.3 s; encoding 2 prompts
    # about 10 ms, so the prompts of calls 2 to 4 are ready before their calls start.
    request = GenerationRequest([f"prompt {n}" for n in range(8)], seed=1, width=256, height=256)
    encoded_on: list[str] = []
    results = {}
    for prefetch in (False, True):
        engine = make_engine(max_batch_size=2)
        engine.lane.prefetch = prefetch
        encoder = engine.model.pipe.text_encoder
        hook = encoder.register_forward_hook(lambda *_: encoded_on.append(threading.current_thread().name))
        try:
            encoded_on.clear()
            results[prefetch] = pixels(make(engine, request))
        finally:
            hook.remove()
        threads = list(encoded_on)
        gaps = engine.stats.gap_summary()
        if prefetch:
            assert "prompt-encoder" in threads and threads[-1] == "prompt-encoder"
            assert gaps["prompt_encoding_p50_ms"] < 2  # nothing left to encode when the calls began
        else:
            assert set(threads) == {"gpu-lane"} and len(threads) == 4
    assert np.array_equal(results[True], results[False])
