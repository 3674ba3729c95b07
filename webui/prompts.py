"""Turning the text a person typed into the list of prompts the engine runs."""

from __future__ import annotations

COMMENT = "#"


def parse_prompts(text: str) -> list[str]:
    """One prompt per line, stripped; blank lines and lines starting with `#` are skipped."""
    prompts = []
    for line in text.splitlines():
        prompt = line.strip()
        if prompt and not prompt.startswith(COMMENT):
            prompts.append(prompt)
    return prompts
