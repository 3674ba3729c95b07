"""What a person asks for: prompts and the settings of every image, as one typed value.

The page's form, `/generate`, the PNG metadata, the manifest, History and "reuse" all read
and write this one shape through `to_record()` / `from_record()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from webui.settings import DEFAULT_GUIDANCE, DEFAULT_SIZE, DEFAULT_STEPS, SEED_PER_IMAGE, SEED_PER_VARIANT
from webui.words import Message


class RequestError(Message):
    """The request cannot run as asked; the message names the limit or the fix (by its key in
    webui/words.py, said in the asker's language)."""


def cannot_save(error: OSError, output_dir: Path) -> RequestError:
    """Disk full, folder not writable, ...: what the person is told (the server itself is fine)."""
    return RequestError("cannot_save", reason=error.strerror or error, file=error.filename, folder=output_dir)


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate, in prompt-then-variant order; seeds as `seed_policy` says."""

    prompts: Sequence[str]  # already parsed: one prompt per item
    images_per_prompt: int = 1  # variants of each prompt
    seed: int = -1  # base seed; -1 picks a random one
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE  # the negative prompt is used only above 0
    negative_prompt: str = ""
    style: str = ""  # appended to every prompt after ", "
    seed_policy: str = SEED_PER_IMAGE

    def __post_init__(self) -> None:
        # A tuple: nothing downstream (the pipeline rewrites lists in place) can change it.
        object.__setattr__(self, "prompts", tuple(self.prompts))

    @property
    def image_count(self) -> int:
        return len(self.prompts) * self.images_per_prompt

    def seed_offset(self, k: int) -> int:
        """Image k's seed minus the base seed."""
        return k % self.images_per_prompt if self.seed_policy == SEED_PER_VARIANT else k

    def text_of(self, prompt: str) -> str:
        """What the model reads for `prompt`: the prompt, then the shared style."""
        return f"{prompt}, {self.style}" if self.style.strip() else prompt

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-ready values, under the field names."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["prompts"] = list(self.prompts)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GenerationRequest:
        """The request in `record` (extra keys ignored, missing ones at their defaults)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})
