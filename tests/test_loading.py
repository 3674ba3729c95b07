"""Model selection and the one-message errors of a model that cannot be loaded."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest
import torch

from webui.loading import ModelLoadError, load_model, resolve_device, resolve_dtype, resolve_model_name
from webui.settings import Settings


def test_auto_picks_the_hub_model_on_cuda_and_the_demo_model_elsewhere() -> None:
    assert resolve_model_name(Settings(), cuda_available=True) == "Tongyi-MAI/Z-Image-Turbo"
    assert resolve_model_name(Settings(), cuda_available=False) == "demo"
    assert resolve_model_name(Settings(model="/w/zi"), cuda_available=False) == "/w/zi"


def test_bf16_on_gpu_fp32_on_cpu() -> None:
    assert resolve_dtype(Settings(), torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype(Settings(), torch.device("cpu")) == torch.float32
    assert resolve_dtype(Settings(dtype="fp32"), torch.device("cuda")) == torch.float32


def test_asking_for_cuda_without_a_gpu_says_what_to_set() -> None:
    with pytest.raises(
        ModelLoadError, match=r"ZIMAGE_DEVICE=cuda but PyTorch sees no CUDA GPU.*ZIMAGE_DEVICE=cpu"
    ):
        resolve_device(Settings(device="cuda"), cuda_available=False)


def test_the_demo_model_is_announced_as_such(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        model = load_model(settings)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("webui")]
    assert any("demo model" in line and "random weights" in line for line in lines)
    assert any(line.startswith("Loaded demo model") for line in lines)
    assert model.label == "demo model"


@pytest.mark.parametrize(
    ("model", "message", "fetches"),
    [
        ("./no-such-folder", "Model folder ./no-such-folder does not exist. Set ZIMAGE_MODEL to", False),
        (
            "Tongyi-MAI/Z-Image-Turbo-Missing",
            "Could not download or find Tongyi-MAI/Z-Image-Turbo-Missing",
            True,
        ),
    ],
)
def test_a_model_that_is_not_there_gives_one_clear_message(
    settings: Settings, model: str, message: str, fetches: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), pytest.raises(ModelLoadError, match=re.escape(message)) as caught:
        load_model(dataclasses.replace(settings, model=model))
    assert "ZIMAGE_MODEL" in str(caught.value) and "\n" not in str(caught.value)
    fetching = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Fetching")]
    announced = (
        f"Fetching {model} from the Hugging Face hub (cache: HF_HOME); the first download "
        "is about 33 GB, progress bars follow"
    )
    assert fetching == [announced] * fetches


def test_a_folder_that_is_not_a_pipeline_is_named(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no model_index\.json"):
        load_model(dataclasses.replace(settings, model=str(tmp_path)))


def test_a_broken_pipeline_folder_is_reported(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(
        '{"_class_name": "ZImagePipeline", "vae": ["diffusers", "AutoencoderKL"]}'
    )
    with pytest.raises(ModelLoadError, match=r"Could not load a ZImagePipeline from .*ZIMAGE_MODEL=demo"):
        load_model(dataclasses.replace(settings, model=str(tmp_path)))


def test_a_local_copy_loads_through_the_same_path(settings: Settings, demo_model) -> None:
    model = load_model(dataclasses.replace(settings, model=demo_model.source))
    assert not model.is_demo and model.label == demo_model.source  # a folder, like real weights
    assert type(model.pipe) is type(demo_model.pipe)
