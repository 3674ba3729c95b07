"""The built-in demo model: Z-Image's architecture, tiny and with random weights.

It exists so that the whole server runs and is tested on machines without a GPU and without
network access. Every component is the class the real model uses (ZImageTransformer2DModel,
a Qwen3 text encoder, AutoencoderKL with 8x downsampling, FlowMatchEulerDiscreteScheduler and
a byte-level BPE tokenizer with a Qwen-style chat template), only far smaller. It is built
from fixed seeds, written once in diffusers layout and then loaded through the same
`ZImagePipeline.from_pretrained` call as the real weights. Its images are coloured noise.

A second variant, `demo-base`, stands in for Z-Image base beside Turbo: the same tiny
architecture with other weights (other seeds), so that jobs routed by model are told apart by
their pixels.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from webui.models import DEMO, DEMO_BASE

logger = logging.getLogger(__name__)

# Bump when anything below changes, so that an old cached copy is not reused.
DEMO_VERSION = 1
SEED = 0
SEEDS = {DEMO: SEED, DEMO_BASE: SEED + 100}  # each variant's weights

# Qwen's template as the pipeline uses it: one user turn, then the assistant header.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# A fixed text to learn BPE merges from, so that token counts resemble a real tokenizer's
# for English prompts. Anything else still encodes, byte by byte.
_CORPUS = """\
a product photo of a red leather sneaker on a white seamless background, studio lighting,
front view, side view, top view, three quarter view, close up, soft shadow, 85mm lens.
a ceramic coffee mug with steam on a wooden table, morning light, shallow depth of field.
a glass perfume bottle on black marble, dramatic rim light, reflections, high contrast.
a navy canvas backpack hanging on a hook, natural window light, muted colours, lifestyle shot.
an olive green wool sweater folded on a linen sheet, flat lay, overhead, minimal styling.
a silver wrist watch with a brown strap, macro, sharp details, dark gradient background.
a wireless headphone in matte black and white, floating, clean, commercial photography.
the same subject in different colours, angles and settings, for an online shop catalogue.
"""


def build_demo_pipeline(variant: str = DEMO) -> ZImagePipeline:
    """The demo pipeline in memory, identical on every call and every machine."""
    tokenizer = _build_tokenizer()
    seed = SEEDS[variant]
    torch.manual_seed(seed)
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=1024,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
        )
    )
    torch.manual_seed(seed + 1)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=32,  # the text encoder's hidden size, as 2560 is for Qwen3-4B
        axes_dims=[4, 6, 6],  # sums to the head dim, 32 / 2
        axes_lens=[1536, 512, 512],
    )
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,  # four blocks: 8x downsampling
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16],
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        force_upcast=True,
        # The real VAE attends over the whole latent; at 1024x1024 that alone would cost
        # the demo seconds per image on a CPU, for no benefit with random weights.
        mid_block_add_attention=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False
    )
    return ZImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def ensure_demo_model(cache_dir: Path, variant: str = DEMO) -> Path:
    """The demo model's folder (of `variant`) under `cache_dir`, built and written there on
    first use.

    The folder appears in one rename, so a reader never sees a half-written model.
    """
    target = cache_dir / f"{variant}-model-v{DEMO_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Building the demo model (tiny, random weights) in %s", target)
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=cache_dir))
    try:
        build_demo_pipeline(variant).save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent builder's win
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_tokenizer() -> PreTrainedTokenizerFast:
    # Byte-level BPE like Qwen's, trained on the fixed corpus; training is deterministic.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
    )
