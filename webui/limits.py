"""The limits a request must keep, checked before any work: counts, sizes, steps, guidance,
seeds, and texts that are plain text of a sane length. Token limits need the tokenizer and
are the engine's (webui/engine.py)."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from webui.request import FIELDS, TEXT, VARIATION, GenerationRequest, RequestError, steps_run
from webui.settings import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SEED, SIZE_MULTIPLE, Settings
from webui.words import Words, words


def check_numbers(request: GenerationRequest, s: Settings) -> None:
    """Counts, sizes, steps, guidance, seeds: each within its limit."""
    if not request.prompts:
        raise RequestError("no_prompts")
    if len(request.prompts) > s.max_prompts:
        raise RequestError("too_many_prompts", count=len(request.prompts), limit=s.max_prompts)
    check_int(words("name_per_prompt"), request.images_per_prompt, 1, s.max_images)
    if request.image_count > s.max_images:
        raise RequestError(
            "too_many_images",
            prompts=len(request.prompts),
            per=request.images_per_prompt,
            count=request.image_count,
            limit=s.max_images,
        )
    for name, value in ((words("name_width"), request.width), (words("name_height"), request.height)):
        check_int(name, value, s.min_size, s.max_size)
        if value % SIZE_MULTIPLE:
            lower = value - value % SIZE_MULTIPLE
            raise RequestError(
                "not_multiple",
                name=name,
                multiple=SIZE_MULTIPLE,
                value=value,
                lower=lower,
                upper=lower + SIZE_MULTIPLE,
            )
    check_int(words("name_steps"), request.steps, s.min_steps, s.max_steps)
    guidance = request.guidance_scale
    if (
        not isinstance(guidance, (int, float))
        or isinstance(guidance, bool)
        or not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE)
    ):
        raise RequestError("guidance_range", high=MAX_GUIDANCE, value=guidance)
    check_table(request)
    if (request.kind == TEXT) != (not request.inputs):
        raise RequestError("inputs_for_text" if request.inputs else "inputs_needed", kind=request.kind)
    if request.kind == VARIATION and steps_run(VARIATION, request.steps, request.strength) < 1:
        raise RequestError("strength_too_low", strength=request.strength, steps=request.steps)
    if len(request.loras) > MAX_LORAS:
        raise RequestError("too_many_loras", count=len(request.loras), limit=MAX_LORAS)
    for entry in request.loras:
        name, strength = (entry[0], entry[1]) if len(entry) == 3 else ("?", None)
        number = isinstance(strength, (int, float)) and not isinstance(strength, bool)
        if not (number and math.isfinite(strength) and -2 <= strength <= 2):
            raise RequestError("lora_strength", name=name, value=strength)
    if len(request.inputs) > s.max_input_images:
        raise RequestError("too_many_inputs", count=len(request.inputs), limit=s.max_input_images)
    if len(request.input_names) not in (0, len(request.inputs)):
        raise RequestError("plain", text="input_names must name every input, or none")
    if request.seed != -1:
        highest = request.seed_offset(request.image_count - 1)  # the last image's, either policy
        check_int(words("name_seed"), request.seed, 0, MAX_SEED - highest, or_random=True)


MAX_LORAS = 4  # per job, as other Z-Image front ends offer


def check_table(request: GenerationRequest) -> None:
    """The fixed limits the field table declares: choices, and number ranges."""
    for field in FIELDS:
        value, spec = getattr(request, field.name), field.spec
        if not spec.choices and spec.low is None:
            continue
        name = field_name(field.name)
        if spec.choices and value not in spec.choices:
            raise RequestError("choice", name=name, choices=", ".join(spec.choices), value=value)
        if spec.low is not None and spec.high is not None:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and spec.low <= value <= spec.high):
                raise RequestError("number_range", name=name, low=spec.low, high=spec.high, value=value)


def field_name(name: str) -> Words:
    """A field's name as messages say it (its `name_...` words)."""
    return words(f"name_{name}")


def check_plain_text(name: Words, text: str, token_limit: int) -> None:
    """Refused unread: text too long to be a prompt, and control characters or non-text bytes."""
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(
            "too_many_chars", name=name, length=len(text), limit=MAX_PROMPT_CHARS, tokens=token_limit
        )
    bad = next((c for c in text if _is_control(c)), None)
    if bad is not None:
        raise RequestError("control_char", name=name, code=ord(bad), position=text.index(bad) + 1)


def _is_control(char: str) -> bool:
    """Control characters (tab aside), lone surrogates, and U+FFFD, which stands in for bytes
    that were not valid UTF-8."""
    return char != "\t" and (unicodedata.category(char) in ("Cc", "Cs") or char == "\ufffd")


def check_int(name: Words, value: Any, low: int, high: int, or_random: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        key = "whole_or_random" if or_random else "whole_range"
        raise RequestError(key, name=name, low=low, high=high, value=value)
