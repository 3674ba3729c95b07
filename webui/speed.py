"""The speed options of a loaded pipeline: attention backend, TF32, FP8 weights, compile.

Each is a setting (webui/settings.py) and each fails with a ModelLoadError that names the
setting to change. The full-size benchmark (webui/bench/) measures them one by one.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

import torch

from webui.preflight import ModelLoadError
from webui.settings import env_name

# Float8 matrix units: Ada (8.9) and Hopper (9.0) and newer.
FP8_CAPABILITY = (8, 9)
RECOMPILE_LIMIT = 64  # graphs Dynamo may keep per compiled function (default 8)
# The transformer's repeated blocks (ZImageTransformer2DModel): nearly all of its work.
BLOCKS = ("layers.", "noise_refiner.", "context_refiner.")


def set_attention_backend(transformer: Any, name: str) -> None:
    """diffusers' attention backend for the transformer; `default` is PyTorch SDPA."""
    try:
        transformer.set_attention_backend("native" if name == "default" else name)
    except Exception as exc:
        raise ModelLoadError(
            f"Attention backend {name!r} is not usable here: {exc}. "
            f"Set {env_name('attention_backend')}=default (PyTorch SDPA)."
        ) from exc


def allow_tf32(enabled: bool) -> None:
    """TF32 for float32 matrix products and convolutions on CUDA (bf16 work is unaffected)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def quantize_fp8(transformer: Any, device: torch.device) -> None:
    """The linear layers of the transformer's repeated blocks in float8, weights and activations
    scaled per row, the activations' scales found at run time (torchao's dynamic float8
    quantization). The small embedders and the final layer stay bf16. Needs torchao and an Ada
    or Hopper GPU."""
    problem = fp8_problem(device)
    if problem:
        raise ModelLoadError(f"{env_name('quantize')}=fp8: {problem}. Set {env_name('quantize')}=none.")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(
        transformer,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and name.startswith(BLOCKS),
    )


def fp8_problem(device: torch.device) -> str | None:
    """Why FP8 cannot run here, or None."""
    if device.type != "cuda":
        return f"float8 matrix products need a CUDA GPU (the model runs on {device})"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        return f"float8 needs compute capability 8.9 or newer (Ada, Hopper); this GPU has {capability}"
    if importlib.util.find_spec("torchao") is None:
        return "it needs the torchao package (pip install torchao)"
    return None


def compile_transformer(transformer: Any) -> None:
    """torch.compile on the repeated blocks only: one block's graphs serve all 30 of them,
    which compiles far faster than the whole model. The engine warms it up before serving.

    With dynamic sizes from the start, each kind of call - the blocks with and without
    modulation, a batch of 1 or more, with or without an attention mask - compiles once, and
    sizes, batch sizes and caption lengths never compile again. The warm-up alone makes 8
    graphs for the blocks' shared forward function: Dynamo's default limit per function, past
    which a fullgraph compile fails the call. So the limit is raised, for these functions.
    """
    if "recompile_limit" in inspect.signature(torch.compile).parameters:
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=True, recompile_limit=RECOMPILE_LIMIT)
    else:  # an older torch: the process-wide setting (per thread in newer ones)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=True)
