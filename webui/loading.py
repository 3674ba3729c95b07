"""Loading a Z-Image pipeline: the real Tongyi-MAI weights or the built-in demo model.

Both go through `ZImagePipeline.from_pretrained`; the demo model is only a folder we write
ourselves first. Whatever goes wrong becomes one `ModelLoadError` that says what was tried
and what to set, instead of a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import ZImagePipeline, ZImageTransformer2DModel
from transformers import AutoTokenizer

from webui import speed
from webui.demo_model import ensure_demo_model
from webui.full_model import TRANSFORMER, build_components
from webui.lora_fit import Shapes, shapes_from_config
from webui.models import DEMO, DEMO_BASE, demo_label, is_demo_name
from webui.preflight import ModelLoadError, local_model_folder
from webui.settings import FULL_RANDOM, HUB_MODEL_ID, Settings, env_name

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class LoadedModel:
    """A ready pipeline and what the rest of the program reports about it."""

    pipe: ZImagePipeline
    source: str  # hub id or folder it was loaded from
    label: str  # what logs, results and PNG metadata call it
    is_demo: bool
    device: torch.device
    dtype: torch.dtype


# What the entry points (webui/__main__.py, webui/distributed/worker.py) call to load: this
# module's functions, unless a test or tool passes its own.
ModelLoader = Callable[[Settings], LoadedModel]
TokenizerLoader = Callable[[Settings], tuple[Any, str, str, bool]]


def resolve_model_name(settings: Settings, cuda_available: bool) -> str:
    """`auto` means the real model where a CUDA GPU can run it, else the demo model."""
    if settings.model == "auto":
        return HUB_MODEL_ID if cuda_available else "demo"
    return settings.model


def resolve_device(settings: Settings, cuda_available: bool) -> torch.device:
    if settings.device == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    device = torch.device(settings.device)
    if device.type == "cuda" and not cuda_available:
        raise ModelLoadError(
            f"{env_name('device')}={settings.device} but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}). Set {env_name('device')}=cpu, or install the CUDA build."
        )
    return device


def resolve_dtype(settings: Settings, device: torch.device) -> torch.dtype:
    if settings.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[settings.dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in _DTYPES.items() if value == dtype)


def load_tokenizer(settings: Settings) -> tuple[Any, str, str, bool]:
    """The model's tokenizer alone (a web host in distributed mode validates with it), with
    the label, dtype name and demo flag that workers loading the same settings report."""
    cuda_available = torch.cuda.is_available()
    name = resolve_model_name(settings, cuda_available)
    dtype = dtype_name(resolve_dtype(settings, resolve_device(settings, cuda_available)))
    if is_demo_name(name):  # every variant has the demo's tokenizer
        return (
            AutoTokenizer.from_pretrained(ensure_demo_model(settings.cache_dir) / "tokenizer"),
            demo_label(name),
            dtype,
            True,
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, subfolder="tokenizer")
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tokenizer of {name} ({type(exc).__name__}: {exc}). Set "
            f"{env_name('model')} to a local folder or hub id of {HUB_MODEL_ID}, as on the workers."
        ) from exc
    return tokenizer, name, dtype, False


def transformer_shapes(settings: Settings) -> Shapes | None:
    """The transformer's linear layers, from its config on the meta device: a web host that
    loads no model checks LoRA files against them. None (and the lane's loader checks alone)
    when the config cannot be read here."""
    name = resolve_model_name(settings, torch.cuda.is_available())
    try:
        if name == FULL_RANDOM:
            return shapes_from_config(TRANSFORMER)
        where = ensure_demo_model(settings.cache_dir, name) if name in (DEMO, DEMO_BASE) else name
        return shapes_from_config(ZImageTransformer2DModel.load_config(where, subfolder="transformer"))
    except Exception as exc:
        logger.warning("LoRA files are not checked at submit: no transformer config of %s (%s)", name, exc)
        return None


def load_model(settings: Settings) -> LoadedModel:
    """Load the pipeline the settings ask for, placed and configured for generation."""
    cuda_available = torch.cuda.is_available()
    name = resolve_model_name(settings, cuda_available)
    device = resolve_device(settings, cuda_available)
    dtype = resolve_dtype(settings, device)
    is_demo = is_demo_name(name)  # images are noise
    started = time.monotonic()
    if name == FULL_RANDOM:  # made where it will run; with CPU offload, in CPU memory
        where = torch.device("cpu") if settings.cpu_offload else device
        pipe, folder, label = full_random_pipeline(settings, where, dtype), "memory", demo_label(name)
    else:
        folder = ensure_demo_model(settings.cache_dir, name) if is_demo else _locate_weights(name)
        pipe, label = _from_folder(folder, dtype), demo_label(name) if is_demo else name
    if is_demo:
        logger.warning(
            "Using the %s: random weights, images are noise. Set %s to %s or a local folder for real images.",
            f"built-in {label} (tiny)" if name != FULL_RANDOM else label,
            env_name("model"),
            HUB_MODEL_ID,
        )

    if settings.attention_backend != "default":
        speed.set_attention_backend(pipe.transformer, settings.attention_backend)
    if device.type == "cuda":
        speed.allow_tf32(settings.tf32)
    if settings.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if settings.quantize == "fp8":
        speed.quantize_fp8(pipe.transformer, device)
    if settings.compile:
        speed.compile_transformer(pipe.transformer)
    pipe.set_progress_bar_config(disable=True)  # progress is reported through callbacks

    logger.info(
        "Loaded %s from %s on %s as %s in %.1f s%s",
        label,
        folder,
        device,
        str(dtype).removeprefix("torch."),
        time.monotonic() - started,
        " with CPU offload" if settings.cpu_offload else "",
    )
    return LoadedModel(pipe, str(folder), label, is_demo, device, dtype)


def _from_folder(folder: Path, dtype: torch.dtype) -> ZImagePipeline:
    try:
        return ZImagePipeline.from_pretrained(folder, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load a ZImagePipeline from {folder} ({type(exc).__name__}: {exc}). "
            f"Check that the folder holds the complete diffusers layout of {HUB_MODEL_ID}, "
            f"or set {env_name('model')}=demo."
        ) from exc


def full_random_pipeline(settings: Settings, device: torch.device, dtype: torch.dtype) -> ZImagePipeline:
    """The real architecture at full size, random weights made on `device` (no download), with
    the demo model's tokenizer and the real scheduler: what the benchmark times."""
    demo = ZImagePipeline.from_pretrained(
        ensure_demo_model(settings.cache_dir), transformer=None, text_encoder=None, vae=None
    )
    return ZImagePipeline(
        scheduler=demo.scheduler, tokenizer=demo.tokenizer, **build_components(device, dtype)
    )


def _locate_weights(name: str) -> Path:
    """A local folder as it is, or a hub id downloaded (or found in the cache) first."""
    folder = local_model_folder(name)
    if folder is not None:
        return folder
    logger.info(
        "Fetching %s from the Hugging Face hub (cache: HF_HOME); the first download is about "
        "33 GB, progress bars follow",
        name,
    )
    try:
        return Path(ZImagePipeline.download(name))
    except Exception as exc:
        raise ModelLoadError(
            f"Could not download or find {name} in the Hugging Face cache "
            f"({type(exc).__name__}: {exc}). Without network access, download it elsewhere "
            f"and set {env_name('model')} to the local folder; for gated or private repos "
            f"set HF_TOKEN; or set {env_name('model')}=demo."
        ) from exc
