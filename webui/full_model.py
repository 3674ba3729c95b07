"""The real Z-Image-Turbo architecture at full size, built from its configs (../shared/ZIMAGE.md)
with no weights to download: for benchmarks with random weights on a GPU, and, on the meta
device (no memory at all), for counting parameters anywhere.

Each component is the class the real model loads: ZImageTransformer2DModel (6.15B parameters),
a Qwen3 text encoder (Qwen3-4B: 4.02B) and AutoencoderKL (84M).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, ZImageTransformer2DModel
from transformers import Qwen3Config, Qwen3Model

TRANSFORMER: dict[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
}
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1e6,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
VAE: dict[str, Any] = {
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
}


def build_components(
    device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16
) -> dict[str, Any]:
    """Transformer, text encoder and VAE at full size, their weights made on `device` (random
    there; no storage at all on the meta device)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # made in `dtype` directly: no full-size fp32 copy first
    try:
        with torch.device(device):
            return {
                "transformer": ZImageTransformer2DModel(**TRANSFORMER),
                "text_encoder": Qwen3Model(Qwen3Config(**TEXT_ENCODER)),
                "vae": AutoencoderKL(**VAE),
            }
    finally:
        torch.set_default_dtype(previous)


def parameter_counts(components: dict[str, Any] | None = None) -> dict[str, int]:
    """The parameters of each component; by default of the full-size ones, counted on the meta
    device: no memory, no GPU."""
    parts = build_components() if components is None else components
    return {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
