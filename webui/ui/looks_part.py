"""The page's "Brand looks (LoRA)" section: up to four LoRAs of the library, each with a strength,
and the library listed (name, size, trigger words or description, or why a file cannot be used).

A row is a dropdown of the library's names and a strength slider, as other WebUIs lay them
out. The names are read from the folder when the page loads and when the section opens, so a
file added there shows without a restart. Whatever a page sends for a row is checked as data
(`loras_from_form`); the job service then checks each name in the library and the file against
the model, as it does for the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.limits import MAX_LORAS
from webui.loras import LoraLibrary
from webui.ui.i18n import t
from webui.ui.parts import QUIET, Parts, error, language
from webui.words import Message, words

if TYPE_CHECKING:  # the page imports this module for its form's rows
    from webui.ui.page import Page

ROWS = range(1, MAX_LORAS + 1)
# What the page's Generate sends for this section, in order: each row's name, then its strength.
LORA_INPUTS = tuple(name for n in ROWS for name in (f"lora_{n}", f"lora_strength_{n}"))
NONE = ""  # a row's value when it names no LoRA
DEFAULT_STRENGTH = 1.0


def looks_part() -> Parts:
    c: Parts = {}
    with gr.Accordion(t("looks"), open=False, elem_id="looks") as c["looks"]:
        c["lora_list"] = gr.Markdown(elem_id="lora-list")
        c["lora_upload"] = gr.UploadButton(
            t("lora_add"), file_types=[".safetensors"], size="sm", visible=False, elem_id="lora-upload"
        )  # for admins: shown when the page finds one signed in
        for n in ROWS:
            with gr.Row(equal_height=True):
                c[f"lora_{n}"] = gr.Dropdown(
                    [(t("lora_none"), NONE)],
                    value=NONE,
                    label=t("lora_row"),
                    allow_custom_value=True,  # a reused job's LoRA shows even if renamed since
                    elem_id=f"lora-{n}",
                    scale=3,
                )
                c[f"lora_strength_{n}"] = gr.Slider(
                    -2, 2, value=DEFAULT_STRENGTH, step=0.05, label=t("lora_strength"),
                    elem_id=f"lora-strength-{n}", scale=2,
                )  # fmt: skip
    return c


def wire_looks(page: Page, demo: gr.Blocks, c: Parts) -> None:
    """The library read again when the page loads and when the section is opened; an admin's
    upload added to it."""
    outputs = [c["lora_list"], *(c[f"lora_{n}"] for n in ROWS)]

    def listed(request: gr.Request) -> list[Any]:
        entries = page.service.loras.entries()
        choices = [(t("lora_none"), NONE)] + [(e["name"], e["name"]) for e in entries if "error" not in e]
        return [library_table(entries, language(request)), *(gr.Dropdown(choices=choices) for _ in ROWS)]

    def upload_shown(request: gr.Request) -> Any:
        return gr.UploadButton(visible=page.identity(request).admin)

    def add(file: Any, request: gr.Request) -> list[Any]:
        """An admin's file into the library: checked as a job's would be, never over a file."""
        try:
            if not page.identity(request).admin:
                raise Message("admins_only")
            path = page.upload(file, request)
            added = page.service.loras.add(path, path.name, page.settings.max_lora_mb)
        except Message as exc:
            raise error(exc, request) from None
        gr.Info(words("lora_added", name=added.name).say(language(request)))
        return listed(request)

    demo.load(listed, None, outputs, **QUIET)
    demo.load(upload_shown, None, c["lora_upload"], **QUIET)
    c["looks"].expand(listed, None, outputs, **QUIET)
    c["lora_upload"].upload(add, c["lora_upload"], outputs, api_name="add_lora", show_progress="hidden")


def library_table(entries: Sequence[Mapping[str, Any]], lang: str) -> str:
    """The library as a Markdown table; an empty library says where files go."""
    if not entries:
        return words("lora_library_empty").say(lang)
    rows = [words("lora_table_head").say(lang), "|---|---:|---|"]
    for e in entries:
        about = e.get("error") or e.get("description") or ""
        size = e.get("size", 0)
        shown = "" if "size" not in e else f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"
        rows.append(f"| {_cell(e['name'])} | {shown} | {_cell(about)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    """Text from a file's name or metadata, shown as plain text in one table cell."""
    escaped = "".join(f"\\{ch}" if ch in "\\`*_{}[]<>()#+-.!|~" else ch for ch in text)
    return " ".join(escaped.split())[:200]


def loras_from_form(values: Mapping[str, Any]) -> tuple[tuple[str, float, str], ...]:
    """The rows that name a LoRA, as the request takes them; Message when a row is not a name
    and a number (a script may send anything)."""
    chosen = []
    for n in ROWS:
        name, strength = values.get(f"lora_{n}"), values.get(f"lora_strength_{n}", DEFAULT_STRENGTH)
        if name is None or name == NONE:
            continue
        if not isinstance(name, str) or len(name) > 200:
            raise Message("not_text", name=words("name_lora"), kind=type(name).__name__)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise Message("lora_strength", name=name, value=str(strength)[:40])
        chosen.append((name, float(strength), ""))
    return tuple(chosen)


def form_rows(loras: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The rows as a request's LoRAs fill them (rows beyond them cleared), by name."""
    values: dict[str, Any] = {}
    for n in ROWS:
        name, strength = (loras[n - 1][0], loras[n - 1][1]) if n <= len(loras) else (NONE, DEFAULT_STRENGTH)
        values |= {f"lora_{n}": name, f"lora_strength_{n}": strength}
    return values


def reuse_notes(loras: Sequence[Sequence[Any]], library: LoraLibrary) -> tuple[list[Any], list[Message]]:
    """The LoRAs a reused job can take again, and what to tell about the others: a file gone is
    left out; a file changed since is used as it is now, and said so."""
    kept, notes = [], []
    for name, strength, digest in loras:
        try:
            now = library.get(name)
        except Message:
            notes.append(Message("lora_gone", name=name))
            continue
        if digest and now.sha256 != digest:
            notes.append(Message("lora_changed_since", name=name))
        kept.append((name, strength, now.sha256))
    return kept, notes
