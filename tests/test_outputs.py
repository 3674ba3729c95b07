"""PNG writing: metadata round trip, readable unique names, nothing half-written."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from webui.outputs import image_stem, read_png_parameters, request_dir, save_png, slugify, write_zip
from webui.sheet import SheetCell, caption_font, write_contact_sheet


def test_parameters_round_trip_and_show_as_text_chunks(tmp_path: Path) -> None:
    params = {"prompt": "赤いスニーカー, studio", "seed": 2**40, "guidance_scale": 0.0, "model": "demo model"}
    path = save_png(Image.new("RGB", (16, 16), "red"), tmp_path, "001_x_s1", params)
    assert read_png_parameters(path) == params
    with Image.open(path) as image:
        assert image.format == "PNG" and image.text["prompt"] == "赤いスニーカー, studio"
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_clashing_names_get_a_suffix_and_nothing_is_overwritten(tmp_path: Path) -> None:
    paths = [
        save_png(Image.new("RGB", (8, 8), colour), tmp_path, "001_sneaker_s5", {"n": n})
        for n, colour in enumerate(["red", "green", "blue"])
    ]
    assert [p.name for p in paths] == ["001_sneaker_s5.png", "001_sneaker_s5-2.png", "001_sneaker_s5-3.png"]
    assert [read_png_parameters(p)["n"] for p in paths] == [0, 1, 2]


def test_no_temporary_file_is_left_and_files_are_complete(tmp_path: Path) -> None:
    def write(n: int) -> None:
        save_png(Image.new("RGB", (64, 64), (n, n, n)), tmp_path, "same", {"n": n})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = os.listdir(tmp_path)
    assert len(names) == 8 and all(n.endswith(".png") and not n.startswith(".") for n in names)
    assert sorted(read_png_parameters(tmp_path / n)["n"] for n in names) == list(range(8))


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot write mode CMYK as PNG"):
        save_png(Image.new("CMYK", (8, 8)), tmp_path, "x", {"n": 1})
    assert os.listdir(tmp_path) == []


def test_names_are_readable() -> None:
    assert image_stem(7, "A red sneaker, front view!", 1234) == "007_a-red-sneaker-front-view_s1234"
    assert slugify("Crème brûlée ☕ on marble") == "crème-brûlée-on-marble"
    assert slugify("☕☕") == "image"
    assert len(slugify("word " * 40)) <= 48
    when = datetime(2026, 11, 21, 9, 5, 3)
    assert request_dir(Path("out"), "ab12cd34", when) == Path("out/2026-11-21/090503-ab12cd34")


def test_names_keep_the_prompts_letters_in_any_script_and_stay_safe(tmp_path: Path) -> None:
    assert image_stem(6, "一只猫坐在窗台上", 42) == "006_一只猫坐在窗台上_s42"
    assert slugify("Ein Hund, über — красная кружка") == "ein-hund-über-красная-кружка"
    assert slugify("猫" * 40) == "猫" * 16  # 48 bytes of UTF-8: cut inside the one long word
    assert len(slugify("窗台上的猫 " * 10).encode()) <= 48
    assert (
        slugify("../../etc/passwd\x00 a\tb\nc .png") == "etc-passwd-a-b-c-png"
    )  # no separators, dots or controls
    path = save_png(Image.new("RGB", (8, 8)), tmp_path, image_stem(6, "一只猫坐在窗台上", 42), {"n": 1})
    assert path.name == "006_一只猫坐在窗台上_s42.png" and path.is_file()


def test_one_image_per_prompt_makes_a_wrapping_grid_with_the_prompt_under_each(tmp_path: Path) -> None:
    rows = []
    for n in range(7):
        path = tmp_path / f"{n}.png"
        Image.new("RGB", (32, 32), (30 * n, 100, 200)).save(path)
        rows.append((f"prompt {n}", [SheetCell(path, f"seed {n}")]))
    with Image.open(write_contact_sheet(rows, tmp_path / "sheet.png")) as sheet:
        pad, line, cell = 12, 20, 256
        block = cell + 2 * line + pad
        assert sheet.size == (pad + 5 * (cell + pad), pad + 2 * block)  # 5 a row, 2 rows
        for n in range(7):
            centre = (pad + (n % 5) * (cell + pad) + cell // 2, pad + (n // 5) * block + cell // 2)
            assert sheet.getpixel(centre) == (30 * n, 100, 200), n


def test_cjk_prompts_are_drawn_as_glyphs_on_the_contact_sheet(tmp_path: Path) -> None:
    if not caption_font()[1]:
        if os.environ.get("CI"):
            pytest.fail("CI must draw CJK captions, but no CJK font is installed (fonts-wqy-microhei)")
        pytest.skip("no CJK font here: ./launch.sh setup installs fonts-wqy-microhei when run as root")
    # Two prompts of the same length: as glyphs they differ; as missing-glyph boxes they would not.
    captions = []
    for prompt in ("一只猫坐在窗台上", "红色运动鞋在白底"):
        sheet_path = write_contact_sheet([(prompt, [SheetCell(None, "seed 1")])], tmp_path / f"{prompt}.png")
        with Image.open(sheet_path) as sheet:
            captions.append(sheet.crop((12, 12, 12 + 256, 12 + 20)).tobytes())
            assert sheet.size[1] == 12 + 20 + 256 + 20 + 12  # no note at the foot: the font has them
    assert captions[0] != captions[1]


def test_without_a_cjk_font_the_sheet_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("webui.sheet.WIDE_FONTS", ())
    caption_font.cache_clear()
    try:
        sheet_path = write_contact_sheet([("一只猫", [SheetCell(None, "seed 1")])], tmp_path / "sheet.png")
        with Image.open(sheet_path) as sheet:
            assert sheet.size[1] == (12 + 20 + 256 + 20 + 12) + 20 + 12  # a line at the foot
            foot = sheet.crop((0, sheet.size[1] - 32, sheet.size[0], sheet.size[1])).convert("RGB")
            assert any(pixel[0] > 120 and pixel[1] < 80 for pixel in foot.getdata())  # red text
    finally:
        caption_font.cache_clear()


def test_a_zip_bundles_the_files_by_name(tmp_path: Path) -> None:
    import zipfile

    paths = [
        save_png(Image.new("RGB", (8, 8), c), tmp_path, f"00{n}_x_s{n}", {"n": n})
        for n, c in enumerate(["red", "blue"])
    ]
    archive = write_zip(paths, tmp_path / "images.zip")
    with zipfile.ZipFile(archive) as bundle:
        assert bundle.namelist() == ["000_x_s0.png", "001_x_s1.png"]
        assert bundle.read("001_x_s1.png") == paths[1].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000_x_s0.png", "001_x_s1.png", "images.zip"]


def test_a_contact_sheet_has_a_row_per_prompt_and_a_column_per_variant(tmp_path: Path) -> None:
    colours = {"red": (220, 30, 30), "navy": (20, 30, 110), "olive": (110, 120, 40)}
    rows = []
    for name, colour in colours.items():
        cells = []
        for variant in range(2):
            path = tmp_path / f"{name}-{variant}.png"
            Image.new("RGB", (64, 32), colour).save(path)  # 2:1, so the thumbnail is 256x128
            cells.append(SheetCell(path, f"seed {variant}"))
        rows.append((f"a {name} sneaker", cells))
    rows[1][1][1] = SheetCell(None, "not saved")  # navy's second image is missing: an empty cell

    sheet_path = write_contact_sheet(rows, tmp_path / "sheet.png")
    with Image.open(sheet_path) as sheet:
        pad, line, cell = 12, 20, 256
        row_height = line + cell + line + pad
        assert sheet.size == (pad + 2 * (cell + pad), pad + 3 * row_height)
        for r, colour in enumerate(colours.values()):
            for c in range(2):
                centre = (pad + c * (cell + pad) + cell // 2, pad + r * row_height + line + 64)
                expected = (255, 255, 255) if (r, c) == (1, 1) else colour
                assert sheet.getpixel(centre) == expected, (r, c)
    assert not list(tmp_path.glob(".*.tmp"))
