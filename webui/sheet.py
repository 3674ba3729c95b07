"""Contact sheets: a job's images on one PNG, captioned, for choosing at a glance.

Several variants per prompt make a table: a row per prompt (its text above), a column per
variant (the seed under each). One image per prompt makes a wrapping grid instead: up to
SHEET_COLUMNS images a row, the prompt and the seed under each. Captions use a font with CJK
glyphs when the machine has one (Noto CJK, WenQuanYi, Droid: looked for at run time); without
one, Chinese or Japanese text would come out as boxes, and the sheet says so at its foot.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from webui.outputs import PNG_COMPRESS_LEVEL, replace_atomically

logger = logging.getLogger(__name__)

SHEET_CELL = 256  # pixels: the longer side of each thumbnail
SHEET_PAD = 12
SHEET_FONT_SIZE = 14
LINE = SHEET_FONT_SIZE + 6  # height of a caption line
SHEET_COLUMNS = 5  # images a row when the sheet wraps
SHEET_BACKGROUND = (255, 255, 255)
SHEET_INK = (20, 20, 20)
NOTE_INK = (170, 30, 30)
# Fonts with CJK glyphs (and Latin ones), in order of preference; Debian's paths.
WIDE_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
NO_WIDE_FONT = (
    "Some captions use characters this machine has no font for (shown as boxes): install "
    "fonts-noto-cjk or fonts-wqy-microhei."
)


@dataclass(frozen=True)
class SheetCell:
    """One image of a contact sheet (a file or one in memory) and the line under it; None
    leaves the cell empty."""

    image: Path | Image.Image | None
    caption: str


@functools.cache
def caption_font(size: int = SHEET_FONT_SIZE) -> tuple[ImageFont.FreeTypeFont, bool]:
    """The captions' font, and whether it has CJK glyphs."""
    for path in WIDE_FONTS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size), True
            except OSError as exc:
                logger.warning("Cannot use the font %s: %s", path, exc)
    return ImageFont.load_default(size=size), False


def needs_wide_font(text: str) -> bool:
    """Characters beyond the Latin, Greek and Cyrillic blocks that the default font draws."""
    return any(ord(character) > 0x052F for character in text)


def write_contact_sheet(
    rows: Sequence[tuple[str, Sequence[SheetCell]]], destination: Path, cell: int = SHEET_CELL
) -> Path:
    """One PNG of the set: a table of prompts by variants, or a wrapping grid when every prompt
    has one image. Thumbnails keep their aspect ratio."""
    font, wide = caption_font()
    texts = [title for title, _ in rows] + [c.caption for _, cells in rows for c in cells]
    note = NO_WIDE_FONT if not wide and any(map(needs_wide_font, texts)) else None
    if note:
        logger.warning("Contact sheet %s: %s", destination, note)
    if len(rows) > 1 and all(len(cells) == 1 for _, cells in rows):
        sheet = _grid([(title, cells[0]) for title, cells in rows], cell, font, note)
    else:
        sheet = _table(rows, cell, font, note)
    return replace_atomically(
        destination, lambda handle: sheet.save(handle, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    )


def _table(
    rows: Sequence[tuple[str, Sequence[SheetCell]]], cell: int, font: ImageFont.FreeTypeFont, note: str | None
) -> Image.Image:
    columns = max((len(cells) for _, cells in rows), default=1)
    width = SHEET_PAD + columns * (cell + SHEET_PAD)
    row_height = LINE + cell + LINE + SHEET_PAD  # prompt, thumbnail, caption
    sheet, draw = _canvas(width, SHEET_PAD + len(rows) * row_height, note, font)
    for r, (title, cells) in enumerate(rows):
        top = SHEET_PAD + r * row_height
        draw.text((SHEET_PAD, top), _fit(draw, title, font, width - 2 * SHEET_PAD), fill=SHEET_INK, font=font)
        for c, item in enumerate(cells):
            left = SHEET_PAD + c * (cell + SHEET_PAD)
            _paste(sheet, item.image, (left, top + LINE), cell)
            draw.text(
                (left, top + LINE + cell + 2), _fit(draw, item.caption, font, cell), fill=SHEET_INK, font=font
            )
    return sheet


def _grid(
    items: Sequence[tuple[str, SheetCell]], cell: int, font: ImageFont.FreeTypeFont, note: str | None
) -> Image.Image:
    columns = min(len(items), SHEET_COLUMNS)
    block = cell + 2 * LINE + SHEET_PAD  # thumbnail, prompt, caption
    width = SHEET_PAD + columns * (cell + SHEET_PAD)
    sheet, draw = _canvas(width, SHEET_PAD + math.ceil(len(items) / columns) * block, note, font)
    for n, (title, item) in enumerate(items):
        left, top = SHEET_PAD + (n % columns) * (cell + SHEET_PAD), SHEET_PAD + (n // columns) * block
        _paste(sheet, item.image, (left, top), cell)
        draw.text((left, top + cell + 2), _fit(draw, title, font, cell), fill=SHEET_INK, font=font)
        draw.text(
            (left, top + cell + 2 + LINE), _fit(draw, item.caption, font, cell), fill=SHEET_INK, font=font
        )
    return sheet


def _canvas(
    width: int, height: int, note: str | None, font: ImageFont.FreeTypeFont
) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A blank sheet, with room at its foot for `note` (drawn in red) when there is one."""
    sheet = Image.new("RGB", (width, height + (LINE + SHEET_PAD if note else 0)), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if note:
        draw.text(
            (SHEET_PAD, height), _fit(draw, note, font, width - 2 * SHEET_PAD), fill=NOTE_INK, font=font
        )
    return sheet, draw


def _paste(sheet: Image.Image, image: Path | Image.Image | None, at: tuple[int, int], cell: int) -> None:
    if isinstance(image, Path):
        with Image.open(image) as opened:
            sheet.paste(ImageOps.contain(opened.convert("RGB"), (cell, cell)), at)
    elif image is not None:
        sheet.paste(ImageOps.contain(image.convert("RGB"), (cell, cell)), at)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """`text`, cut with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
