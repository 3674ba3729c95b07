"""The limits a request must keep, checked before any work: counts, sizes, steps, guidance,
seeds, and texts that are plain text of a sane length. Token limits need the tokenizer and
are the engine's (webui/engine.py)."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from webui.request import GenerationRequest, RequestError
from webui.settings import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SEED, SEED_POLICIES, SIZE_MULTIPLE, Settings


def check_numbers(request: GenerationRequest, s: Settings) -> None:
    """Counts, sizes, steps, guidance, seeds: each within its limit."""
    if not request.prompts:
        raise RequestError(
            "No prompts: type at least one prompt, one per line "
            "(blank lines and lines starting with # are skipped)."
        )
    if len(request.prompts) > s.max_prompts:
        raise RequestError(
            f"Too many prompts: {len(request.prompts)} (the limit is {s.max_prompts} per request)."
        )
    check_int("Images per prompt", request.images_per_prompt, 1, s.max_images)
    if request.image_count > s.max_images:
        raise RequestError(
            f"Too many images: {len(request.prompts)} prompts x {request.images_per_prompt} "
            f"= {request.image_count} (the limit is {s.max_images} per request)."
        )
    for name, value in (("Width", request.width), ("Height", request.height)):
        check_int(name, value, s.min_size, s.max_size)
        if value % SIZE_MULTIPLE:
            lower = value - value % SIZE_MULTIPLE
            raise RequestError(
                f"{name} must be a multiple of {SIZE_MULTIPLE} (got {value}; "
                f"try {lower} or {lower + SIZE_MULTIPLE})."
            )
    check_int("Steps", request.steps, s.min_steps, s.max_steps)
    guidance = request.guidance_scale
    if (
        not isinstance(guidance, (int, float))
        or isinstance(guidance, bool)
        or not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE)
    ):
        raise RequestError(f"Guidance scale must be between 0 and {MAX_GUIDANCE:g} (got {guidance!r}).")
    if request.seed_policy not in SEED_POLICIES:
        raise RequestError(
            f"Seed policy must be one of {', '.join(SEED_POLICIES)} (got {request.seed_policy!r})."
        )
    if request.seed != -1:
        highest = request.seed_offset(request.image_count - 1)  # the last image's, either policy
        check_int("Seed", request.seed, 0, MAX_SEED - highest, "-1 (random) or ")


def check_plain_text(name: str, text: str, token_limit: int) -> None:
    """Refused unread: text too long to be a prompt, and control characters or non-text bytes."""
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(
            f"{name} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
            f"characters (and {token_limit} tokens)."
        )
    bad = next((c for c in text if _is_control(c)), None)
    if bad is not None:
        raise RequestError(
            f"{name} contains a control character or non-text byte (U+{ord(bad):04X} at "
            f"character {text.index(bad) + 1}); prompts must be plain text."
        )


def _is_control(char: str) -> bool:
    """Control characters (tab aside), lone surrogates, and U+FFFD, which stands in for bytes
    that were not valid UTF-8."""
    return char != "\t" and (unicodedata.category(char) in ("Cc", "Cs") or char == "\ufffd")


def check_int(name: str, value: Any, low: int, high: int, also: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be {also}a whole number from {low} to {high} (got {value!r}).")
