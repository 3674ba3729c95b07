"""Cut-outs, placement and compositing (webui/product.py) and input checks (webui/inputs.py),
in-process on small images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from webui.inputs import InputStore, input_name, read_image
from webui.product import (
    FEATHER_PX,
    check_cutout,
    composite,
    cutout_from_alpha,
    cutout_from_mask,
    cutout_plain_background,
    place,
    preview,
)
from webui.request import RequestError


def square(size: int = 60, inner: int = 20) -> Image.Image:
    """A transparent frame with an opaque red square in the middle, soft-edged alpha."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (inner, inner), (200, 10, 10, 255)), ((size - inner) // 2,) * 2)
    return image


def test_a_cutout_comes_from_transparency_binarised() -> None:
    image = square()
    image.putpixel((0, 0), (0, 0, 0, 140))  # half-transparent: counts as product
    alpha = np.asarray(cutout_from_alpha(image).getchannel("A"))
    assert set(np.unique(alpha)) == {0, 255} and alpha[0, 0] == 255 and alpha.sum() == 255 * 401
    with pytest.raises(RequestError, match="no transparent pixels"):
        cutout_from_alpha(Image.new("RGB", (10, 10)))


def test_a_painted_brush_layer_marks_the_product_and_sizes_must_match() -> None:
    photo = Image.new("RGB", (40, 40), "white")
    strokes = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    strokes.paste(Image.new("RGBA", (10, 12), (255, 0, 255, 255)), (5, 6))
    assert cutout_from_mask(photo, strokes).getchannel("A").getbbox() == (5, 6, 15, 18)
    grey = Image.new("L", (40, 40), 0)
    grey.paste(255, (1, 2, 3, 4))
    assert cutout_from_mask(photo, grey).getchannel("A").getbbox() == (1, 2, 3, 4)  # bright = product
    with pytest.raises(RequestError, match="The mask is 5x5 but the image is 40x40"):
        cutout_from_mask(photo, Image.new("L", (5, 5)))


def test_plain_background_removes_the_border_colour_but_not_enclosed_white() -> None:
    photo = np.full((50, 50, 3), 250, np.uint8)
    photo += np.random.default_rng(1).integers(0, 5, photo.shape, dtype=np.uint8)  # noisy white
    photo[10:40, 10:40] = (30, 30, 160)
    photo[20:30, 20:30] = 255  # a white label inside the product
    alpha = np.asarray(cutout_plain_background(Image.fromarray(photo)).getchannel("A"))
    assert alpha[:10].max() == 0 and alpha[45:].max() == 0  # the background went
    assert alpha[10:40, 10:40].min() == 255  # the product, its white label included, stayed


def test_a_cutout_needs_something_to_keep_and_something_to_generate() -> None:
    with pytest.raises(RequestError, match="Nothing to keep"):
        check_cutout(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    with pytest.raises(RequestError, match="Nothing to generate"):
        check_cutout(Image.new("RGBA", (8, 8), (9, 9, 9, 255)))
    check_cutout(square())


def test_placement_sizes_and_positions_the_product() -> None:
    centred = place(square(), 200, 100, scale=0.5)
    left, top, right, bottom = centred.keep.getbbox()
    assert (right - left, bottom - top) == (50, 50)  # 0.5 of the shorter side
    assert (left, top) == (75, 25)
    standing = place(square(), 200, 100, scale=0.5, position="bottom")
    assert standing.keep.getbbox()[3] == 100 - 6  # a margin of 6% above the lower edge
    framed = place(square(60, 20), 120, 120, position="frame")
    assert framed.keep.getbbox() == (40, 40, 80, 80)  # the layout kept, scaled to the frame
    generate = np.asarray(centred.generate) == 255
    assert generate[0, 0] and not generate[50, 100]  # white: generate; the product's middle: keep
    with pytest.raises(RequestError, match="Position must be one of center, bottom, frame"):
        place(square(), 64, 64, position="left")
    with pytest.raises(RequestError, match=r"between 0\.1 and 1"):
        place(square(), 64, 64, scale=1.5)


def test_compositing_keeps_every_product_pixel_and_the_scene_elsewhere() -> None:
    striped = square(80, 40)
    pixels = np.asarray(striped).copy()
    pixels[20:60:2, 20:60, :3] = (10, 250, 10)  # stripes: a resize that blurred them would show
    placed = place(Image.fromarray(pixels, "RGBA"), 96, 96, scale=0.6)
    scene = Image.effect_noise((96, 96), 100).convert("RGB")
    out = np.asarray(composite(scene, placed), np.int16)
    inner = np.asarray(placed.keep.filter(ImageFilter.MinFilter(2 * FEATHER_PX + 1)), bool)
    assert inner.sum() > 500
    assert np.array_equal(out[inner], np.asarray(placed.canvas, np.int16)[inner])
    outside = ~np.asarray(placed.keep, bool)
    assert np.array_equal(out[outside], np.asarray(scene, np.int16)[outside])
    edge = np.asarray(placed.blend)[np.asarray(placed.keep, bool) & ~inner]
    assert ((edge > 0) & (edge < 255)).any()  # a soft edge between product and scene


def test_preview_shows_the_cutout_on_a_checkerboard() -> None:
    shown = np.asarray(preview(square(64, 20), 64))
    assert shown.shape == (64, 64, 3)
    assert {tuple(shown[0, 0]), tuple(shown[0, 8])} == {(235, 235, 235), (205, 205, 205)}
    assert tuple(shown[32, 32]) == (200, 10, 10)


def png_bytes(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_inputs_are_checked_before_decoding_and_stored_once_by_hash(tmp_path) -> None:
    with pytest.raises(RequestError, match=r"is 1\.0 MB; the limit is 0\.5 MB"):
        read_image(b"x" * 1_000_001, "big.png", 0.5, 10**6)
    with pytest.raises(RequestError, match="4000x4000 pixels; the limit is 1,000,000"):
        read_image(png_bytes(Image.new("1", (4000, 4000))), "bomb.png", 20, 10**6)
    with pytest.raises(RequestError, match="is a BMP file"):
        read_image(png_bytes(Image.new("RGB", (4, 4)), "BMP"), "a.bmp", 20, 10**6)
    with pytest.raises(RequestError, match="not an image that can be read"):
        read_image(png_bytes(Image.new("RGB", (64, 64)))[:60], "cut.png", 20, 10**6)  # truncated
    store = InputStore(tmp_path / "inputs")
    first = store.put(square())
    assert store.put(square()) == first and len(list(store.folder.rglob("*.png"))) == 1
    assert np.array_equal(np.asarray(store.open(first)), np.asarray(square()))
    with pytest.raises(RequestError, match="not stored on this server"):
        store.read("0" * 64)
    with pytest.raises(RequestError, match="not stored"):
        store.path("../../etc/passwd")  # a hash is 64 hex digits, never a path
    assert input_name("C:\\photos\\red bottle.final.png", 1) == "red bottle.final"
    assert input_name("../../x\x07y.png", 2) == "xy" and input_name("", 3) == "image 3"
