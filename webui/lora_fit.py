"""Does a LoRA file fit the model? Checked when a job is accepted, so that it never fails mid-run.

The file is read as safetensors (never as a pickle), then its tensors go through diffusers'
own `ZImagePipeline.lora_state_dict`, which turns the common Kohya and ai-toolkit key layouts
into diffusers' names, exactly as the lane's loader will. Each LoRA weight then has to name
a linear layer of the model's transformer and match its shape: `lora_A` is (rank,
in_features), `lora_B` is (out_features, rank). A file none of whose keys name a layer (made
for another architecture) or whose shapes differ is refused with its name. The model's layers
come from the loaded transformer (embedded mode) or from its config built on the meta device,
which allocates nothing (the web host of distributed mode).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import ZImagePipeline, ZImageTransformer2DModel
from safetensors.torch import load_file

from webui.request import RequestError

logger = logging.getLogger(__name__)

Shapes = dict[str, tuple[int, int]]  # linear layer name -> (in_features, out_features)
PREFIX = "transformer."


def linear_shapes(transformer: torch.nn.Module) -> Shapes:
    """The transformer's linear layers and their shapes, as a LoRA file names them (a layer
    already wrapped by PEFT counts as its base layer)."""
    shapes: Shapes = {}
    for name, module in transformer.named_modules():
        if ".lora_" in name or name.endswith("base_layer") or ".base_layer." in name:
            continue
        layer = getattr(module, "base_layer", module)
        if isinstance(layer, torch.nn.Linear):
            shapes[name] = (layer.in_features, layer.out_features)
    return shapes


def shapes_from_config(config: dict[str, Any]) -> Shapes:
    """The linear layers of a transformer of this config, made on the meta device."""
    with torch.device("meta"):
        transformer = ZImageTransformer2DModel.from_config(config)
    return linear_shapes(transformer)


def check_fit(path: Path, name: str, shapes: Shapes) -> None:
    """RequestError naming the file when it cannot act on a model with these layers."""
    try:
        # Read here as safetensors, whatever the file is called (diffusers' loader would take a
        # name without the suffix for a pickle); then its key conversion, on the tensors.
        state = ZImagePipeline.lora_state_dict(load_file(path))
    except Exception as exc:  # a corrupt or odd file: refused, never a crash
        logger.info("LoRA %s could not be read by the loader: %s", name, exc)
        raise RequestError("lora_not_safetensors", name=name) from None
    matched = 0
    for key, tensor in state.items():
        layer, part = _layer_of(key)
        if layer is None:
            continue
        if layer not in shapes:
            raise RequestError("lora_no_fit", name=name, detail=f"no layer {layer}")
        matched += 1
        expected = _expected(part, shapes[layer], tensor)
        if expected is not None and tuple(tensor.shape) != expected:
            got = "x".join(map(str, tensor.shape))
            want = "x".join(map(str, expected))
            raise RequestError("lora_no_fit", name=name, detail=f"{layer}: {got}, the model needs {want}")
    if not matched:
        raise RequestError("lora_no_fit", name=name, detail="none of its weights names a layer of this model")


def _layer_of(key: str) -> tuple[str | None, str]:
    """The layer a LoRA weight belongs to, and which weight it is (lora_A, lora_B, lokr_w1...)."""
    key = key.removeprefix(PREFIX)
    for marker in (".lora_A.", ".lora_B.", ".lokr_", ".lora_magnitude_vector"):
        if marker in key:
            layer, _, rest = key.partition(marker)
            return layer, marker.strip(".") + rest
    return None, ""


def _expected(part: str, shape: tuple[int, int], tensor: torch.Tensor) -> tuple[int, ...] | None:
    """The shape a weight must have on a layer of `shape`; None when the loader checks it alone."""
    in_features, out_features = shape
    if part.startswith("lora_A") and tensor.ndim == 2:
        return (tensor.shape[0], in_features)
    if part.startswith("lora_B") and tensor.ndim == 2:
        return (out_features, tensor.shape[1])
    return None
