"""The images section in a real Chromium: transparent cut-outs with their preview, a photo with
the product painted over, a product on white cut out by "plain background", and results
grouped by product; then the looks section: a LoRA chosen with its strength, seen in the picked
image's details, and reuse saying when its file changed or is gone. Screenshots land in the
artifacts folder (wide and phone sizes)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ARTIFACTS, CHROMIUM, Server, chromium, gallery_boxes, running_server
from tests.test_loras import make_lora
from webui.loading import LoadedModel
from webui.outputs import read_png_parameters

if not Path(CHROMIUM).is_file():
    pytest.skip(f"needs Chromium at {CHROMIUM} (./launch.sh test installs it)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("browser-images"), cache_dir) as server:
        yield server


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(server.url)
    expect(page.locator("#prompts textarea")).to_be_visible(timeout=60_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("product-files")
    made = {}
    for name, colour in (("red-bottle", (210, 30, 30)), ("blue-box", (30, 50, 210))):
        image = Image.new("RGBA", (80, 100), (0, 0, 0, 0))
        image.paste(Image.new("RGBA", (40, 60), (*colour, 255)), (20, 20))
        made[name] = folder / f"{name}.png"
        image.save(made[name])
    photo = Image.new("RGB", (96, 96), "white")
    photo.paste(Image.new("RGB", (40, 50), (20, 140, 60)), (28, 23))
    made["on-white"] = folder / "on-white.jpg"
    photo.save(made["on-white"], quality=95)
    return made


def open_images(page: Page, kind: str) -> None:
    page.locator("#inputs").get_by_text("Product or reference images").click()
    page.locator("#kind").get_by_text(kind).click()


def small(page: Page, prompts: str) -> None:
    page.locator("#prompts textarea").fill(prompts)
    for field in ("#width", "#height"):
        page.locator(f"{field} input[type=number]").fill("64")
        page.locator(f"{field} input[type=number]").press("Enter")


def test_transparent_cutouts_preview_then_results_grouped_by_product(
    page: Page, files: dict[str, Path]
) -> None:
    open_images(page, "Product in scene")
    page.locator("#input-files input[type=file]").set_input_files([files["red-bottle"], files["blue-box"]])
    expect(page.locator("#input-preview img")).to_have_count(2, timeout=30_000)
    small(page, "on a beach\nin a kitchen")
    expect(page.locator("#count")).to_contain_text("2 images x 2 prompts x 1 = 4 images")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-products-form.png"), full_page=True)
    page.locator("#generate").click()
    expect(page.locator("#gallery img")).to_have_count(4, timeout=120_000)
    captions_with_seeds = page.locator("#gallery .caption-label").all_inner_texts()
    captions = [c.split(" (seed")[0] for c in captions_with_seeds]
    assert captions == [
        "red-bottle: on a beach",
        "red-bottle: in a kitchen",
        "blue-box: on a beach",
        "blue-box: in a kitchen",
    ]
    boxes = gallery_boxes(page, 4)
    rows = [round(box["y"]) for box in boxes if box is not None]
    assert rows[0] == rows[1] < rows[2] == rows[3]  # a row per product
    page.screenshot(path=str(ARTIFACTS / "browser-products-results.png"), full_page=True)
    # "Use this seed" on the blue box's beach: its input comes back instead of the uploads.
    page.locator("#gallery img").nth(2).click()
    page.locator("#use-seed").click()
    expect(page.locator("#prompts textarea")).to_have_value("on a beach")
    expect(page.locator("#count")).to_contain_text("1 image x 1 prompt x 1 = 1 image")
    expect(page.locator("#input-preview img")).to_have_count(1, timeout=30_000)
    page.locator("#generate").click()
    expect(page.locator("#summary")).to_contain_text("1 image in", timeout=120_000)
    [again] = page.locator("#gallery .caption-label").all_inner_texts()
    assert again == captions_with_seeds[2]
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "browser-products-phone.png"), full_page=True)


def test_a_product_on_white_is_cut_out_by_plain_background(page: Page, files: dict[str, Path]) -> None:
    open_images(page, "Product in scene")
    page.locator("#input-files input[type=file]").set_input_files([files["on-white"]])
    expect(page.locator("#preview-note")).to_contain_text("no transparent pixels", timeout=30_000)
    page.locator("#cutout").get_by_text("Plain background").click()
    expect(page.locator("#input-preview img")).to_have_count(1, timeout=30_000)
    expect(page.locator("#preview-note")).not_to_contain_text("transparent")
    small(page, "on marble")
    page.locator("#generate").click()
    expect(page.locator("#gallery img")).to_have_count(1, timeout=120_000)
    expect(page.locator("#gallery .caption-label")).to_contain_text("on-white: on marble")


def test_a_photo_with_the_product_painted_over(page: Page, files: dict[str, Path], server: Server) -> None:
    open_images(page, "Product in scene")
    editor = page.locator("#painted")
    editor.locator("input[type=file]").first.set_input_files(files["on-white"])
    canvas = editor.locator("canvas").first
    expect(canvas).to_be_visible(timeout=30_000)
    editor.get_by_role("button", name=re.compile("brush", re.I)).first.click()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    small(page, "on a desk")
    page.locator("#generate").click()
    expect(page.locator("#gallery img")).to_have_count(1, timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "browser-products-painted.png"), full_page=True)
    [made] = [p for p in server.output_dir.rglob("*on-a-desk*.png")]
    assert np.asarray(Image.open(made)).std() > 0


def test_variations_say_how_many_steps_their_strength_runs(page: Page, files: dict[str, Path]) -> None:
    open_images(page, "Variations of each image")
    expect(page.locator("#cutout")).to_be_hidden()  # product options only for product shots
    page.locator("#input-files input[type=file]").set_input_files([files["on-white"]])
    expect(page.locator("#input-preview img")).to_have_count(1, timeout=30_000)
    page.locator("#strength input[type=number]").fill("0.5")
    page.locator("#strength input[type=number]").press("Enter")
    expect(page.locator("#strength-note")).to_contain_text("runs 4 of 8 steps")
    small(page, "a watercolour")
    page.locator("#generate").click()
    expect(page.locator("#gallery img")).to_have_count(1, timeout=120_000)
    expect(page.locator("#gallery .caption-label")).to_contain_text("on-white: a watercolour")


def test_a_lora_chosen_with_its_strength_shows_in_the_picked_image_and_reuse_says_it_changed(
    page: Page, server: Server, demo_model: LoadedModel
) -> None:
    folder = server.output_dir.parent / "loras"  # the default library folder, seen without a restart
    make_lora(demo_model, folder, "brand-look", 3)
    page.reload()
    page.locator("#looks").get_by_text("Brand looks (LoRA)").click()
    expect(page.locator("#lora-list")).to_contain_text("brand-look", timeout=30_000)
    page.locator("#lora-1 input").click()
    page.get_by_role("option", name="brand-look").click()
    page.locator("#lora-strength-1 input[type=number]").fill("0.5")
    page.locator("#lora-strength-1 input[type=number]").press("Enter")
    small(page, "a mug, brand look")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-looks-form.png"), full_page=True)
    page.locator("#generate").click()
    expect(page.locator("#gallery img")).to_have_count(1, timeout=120_000)
    page.locator("#gallery img").first.click()
    expect(page.locator("#picked-info")).to_contain_text("LoRA brand-look 0.5")
    [made] = server.output_dir.rglob("*a-mug-brand-look*.png")
    sha = hashlib.sha256((folder / "brand-look.safetensors").read_bytes()).hexdigest()
    assert read_png_parameters(made)["loras"] == [["brand-look", 0.5, sha]]
    # The file replaced by another version: "Use this seed" says so and keeps the row.
    make_lora(demo_model, folder, "brand-look", 4)
    page.locator("#use-seed").click()
    expect(page.get_by_text("has changed since these images were made")).to_be_visible(timeout=30_000)
    expect(page.locator("#lora-1 input")).to_have_value("brand-look")
    expect(page.locator("#lora-strength-1 input[type=number]")).to_have_value("0.5")
    # Gone: the settings come back without it.
    (folder / "brand-look.safetensors").unlink()
    page.locator("#use-seed").click()
    expect(page.get_by_text("is no longer in the library")).to_be_visible(timeout=30_000)
    expect(page.locator("#lora-1 input")).to_have_value("(none)")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "browser-looks-phone.png"), full_page=True)
