"""The built-in demo model: Z-Image's classes, built deterministically, loaded like real weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
from transformers import Qwen3Model

from tests.helpers import make
from webui.demo_model import ensure_demo_model
from webui.loading import LoadedModel, load_model
from webui.models import family_of
from webui.request import GenerationRequest
from webui.settings import Settings


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_it_is_built_identically_every_time(tmp_path: Path, demo_model: LoadedModel) -> None:
    first = digest(ensure_demo_model(tmp_path / "a"))
    second = digest(ensure_demo_model(tmp_path / "b"))
    assert first == second
    assert first == digest(Path(demo_model.source))  # and the same as the session's copy
    assert "model_index.json" in first and "tokenizer/tokenizer.json" in first


def test_it_is_written_once_and_reused(tmp_path: Path) -> None:
    folder = ensure_demo_model(tmp_path)
    marker = folder / "model_index.json"
    before = marker.stat().st_mtime_ns
    assert ensure_demo_model(tmp_path) == folder and marker.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left


def test_it_has_the_z_image_architecture(demo_model: LoadedModel) -> None:
    pipe = demo_model.pipe
    assert isinstance(pipe, ZImagePipeline)
    assert isinstance(pipe.transformer, ZImageTransformer2DModel)
    assert isinstance(pipe.text_encoder, Qwen3Model)
    assert isinstance(pipe.vae, AutoencoderKL) and pipe.vae_scale_factor == 8
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert pipe.transformer.config.cap_feat_dim == pipe.text_encoder.config.hidden_size
    index = json.loads((Path(demo_model.source) / "model_index.json").read_text())
    assert index["_class_name"] == "ZImagePipeline"


def test_the_tokenizer_has_a_qwen_style_chat_template(demo_model: LoadedModel) -> None:
    tokenizer = demo_model.pipe.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a red sneaker"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )
    assert text == "<|im_start|>user\na red sneaker<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in ids
    assert tokenizer.decode(ids) == text  # byte-level: lossless, any script
    assert tokenizer.decode(tokenizer("商品写真 ☕")["input_ids"]) == "商品写真 ☕"
    assert len(tokenizer("a red sneaker on a white background")["input_ids"]) < 15  # BPE merges


def test_loaded_in_fp32_on_cpu(demo_model: LoadedModel) -> None:
    assert demo_model.is_demo and demo_model.label == "demo model"
    assert str(demo_model.device) == "cpu"
    assert {p.dtype for p in demo_model.pipe.transformer.parameters()} == {__import__("torch").float32}


# Pixels of one image for a fixed prompt and seed (red channel every 16 pixels, and a run of
# RGB pixels), as diffusers' tests pin an expected slice: a library upgrade that changed how
# the pipeline computes would change them, and fail here rather than pass unnoticed.
EXPECTED_RED_GRID = [[150, 160, 166, 150], [151, 110, 189, 88], [136, 150, 162, 116], [155, 156, 158, 200]]
EXPECTED_RUN = [[194, 102, 189], [193, 98, 162], [173, 66, 187], [190, 7, 175], [166, 0, 217], [135, 0, 198]]


def test_a_fixed_prompt_and_seed_give_the_pinned_pixels(engine) -> None:
    result = make(engine, GenerationRequest(["a red leather sneaker"], seed=42, width=64, height=64, steps=8))
    pixels = np.asarray(result.images[0].image, dtype=np.int16)
    # Within 2/255: float rounding may differ between CPUs, a changed computation moves far more.
    assert np.abs(pixels[::16, ::16, 0] - np.array(EXPECTED_RED_GRID)).max() <= 2
    assert np.abs(pixels[30, 30:36] - np.array(EXPECTED_RUN)).max() <= 2


def test_the_base_variant_has_other_weights(tmp_path: Path, demo_model: LoadedModel) -> None:
    """`demo-base` stands in for Z-Image base: same architecture, other weights, base's family."""
    base = load_model(Settings(model="demo-base", device="cpu", dtype="fp32", cache_dir=tmp_path).validate())
    assert base.label == "demo model (base)" and base.is_demo
    assert family_of(base.label).steps == 28 and family_of(demo_model.label).steps == 8
    ours, theirs = (
        dict(demo_model.pipe.transformer.named_parameters()),
        dict(base.pipe.transformer.named_parameters()),
    )
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert any(not torch.equal(ours[k], theirs[k]) for k in ours)
