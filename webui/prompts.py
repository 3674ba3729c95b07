"""Turning the text a person typed into the list of prompts the engine runs.

One prompt per line. A line may hold alternatives in braces, `a {red|navy} sneaker, {front|side}
view`, and stands for every combination, in reading order (the first group varies slowest):
here four prompts. Groups nest (`{red|navy {matte|glossy}}` is three alternatives), an
alternative may be empty (`a {|leather }bag`), and `\\{`, `\\}`, `\\|` and `\\\\` stand for the
character itself; any other backslash is kept as it is. `|` outside braces is plain text.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from webui.settings import MAX_PROMPT_CHARS
from webui.words import Message, words

COMMENT = "#"
ESCAPABLE = "{}|\\"
MAX_DEPTH = 8  # braces inside braces: deeper is refused (the parser recurses once a level)


class TemplateError(Message):
    """A line whose braces do not parse, or a box that expands past the limit."""


@dataclass(frozen=True)
class _Group:
    """`{a|b|...}`: one of its alternatives, each a sequence of parts."""

    alternatives: tuple[tuple[str | _Group, ...], ...]


class _Parser:
    def __init__(self, line: str) -> None:
        self.line, self.pos = line, 0

    def sequence(self, depth: int) -> tuple[str | _Group, ...]:
        """Text and groups up to the end of the line, or to the `|` or `}` that ends an alternative."""
        parts: list[str | _Group] = []
        text: list[str] = []
        line = self.line
        while self.pos < len(line):
            char = line[self.pos]
            if char == "\\" and self.pos + 1 < len(line) and line[self.pos + 1] in ESCAPABLE:
                text.append(line[self.pos + 1])
                self.pos += 2
            elif char == "{":
                parts.append("".join(text))
                text.clear()
                parts.append(self.group(depth + 1))
            elif char in "|}" and depth > 0:
                break
            elif char == "}":
                raise TemplateError("template_close", column=self.pos + 1)
            else:
                text.append(char)
                self.pos += 1
        parts.append("".join(text))
        return tuple(part for part in parts if part != "")

    def group(self, depth: int) -> _Group:
        opened = self.pos
        if depth > MAX_DEPTH:
            raise TemplateError("template_deep", limit=MAX_DEPTH, column=opened + 1)
        self.pos += 1  # the '{'
        alternatives = [self.sequence(depth)]
        while self.pos < len(self.line) and self.line[self.pos] == "|":
            self.pos += 1
            alternatives.append(self.sequence(depth))
        if self.pos == len(self.line):
            raise TemplateError("template_open", column=opened + 1)
        self.pos += 1  # the '}'
        return _Group(tuple(alternatives))


def _count(parts: tuple[str | _Group, ...]) -> int:
    return math.prod(sum(_count(a) for a in part.alternatives) for part in parts if isinstance(part, _Group))


def _expand(parts: tuple[str | _Group, ...]) -> Iterator[str]:
    choices = [
        [part] if isinstance(part, str) else [t for a in part.alternatives for t in _expand(a)]
        for part in parts
    ]
    for combination in itertools.product(*choices):
        yield "".join(combination)


def _lines(text: str, limit: int | None = None) -> list[tuple[str | _Group, ...]]:
    """The box's prompt lines, parsed: stripped, blank lines and `#` lines skipped. With
    `limit`, a box too long to hold that many prompts is refused unread."""
    most = None if limit is None else limit * (MAX_PROMPT_CHARS + 1)
    if most is not None and len(text) > most:
        raise TemplateError("box_too_long", name=words("name_box"), length=len(text), limit=most)
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(COMMENT):
            try:
                lines.append(_Parser(stripped).sequence(0))
            except TemplateError as exc:
                raise TemplateError("template_line", number=number, error=exc) from None
    return lines


def count_prompts(text: str, limit: int | None = None) -> int:
    """How many prompts the box makes, without making them; TemplateError names a bad line
    (or, with `limit`, a box too long to hold that many)."""
    return sum(_count(parts) for parts in _lines(text, limit))


def parse_prompts(text: str, limit: int | None = None) -> list[str]:
    """Every prompt of the box, templates expanded. TemplateError names a bad line; with
    `limit`, also when the box makes more prompts than that (counted before expanding)."""
    lines = _lines(text, limit)
    total = sum(_count(parts) for parts in lines)
    if limit is not None and total > limit:
        n = len(lines)
        if total > n:
            raise TemplateError("too_many_expanded", count=total, lines=n, limit=limit)
        raise TemplateError("too_many_prompts", count=total, limit=limit)
    # Collapsing runs of spaces: an empty alternative would otherwise leave two.
    return [re.sub(r" {2,}", " ", prompt).strip() for parts in lines for prompt in _expand(parts)]


PROMPT_FILE_TYPES = (".txt", ".csv")
PROMPT_COLUMN = "prompt"


def prompts_from_file(name: str, data: bytes, max_bytes: int) -> str:
    """The prompt box text of an uploaded file: a .txt as it is (one prompt per line), or the
    `prompt` column of a .csv (the first column when no header cell says `prompt`).

    ValueError says what is wrong: the type, the size, or bytes that are not UTF-8 text.
    """
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in PROMPT_FILE_TYPES:
        raise Message("file_type", name=name)
    if len(data) > max_bytes:
        raise Message("file_size", size=len(data), limit=max_bytes)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is dropped
    except UnicodeDecodeError as exc:
        raise Message("file_encoding", position=exc.start + 1) from None
    if suffix == ".txt":
        return text
    rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    column = header.index(PROMPT_COLUMN) if PROMPT_COLUMN in header else 0
    body = rows[1:] if PROMPT_COLUMN in header else rows
    # One prompt per line: a cell's own line breaks become spaces.
    return "\n".join(
        " ".join(row[column].split()) for row in body if column < len(row) and row[column].strip()
    )
