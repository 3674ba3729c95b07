"""Cut-outs, placement and compositing (webui/product.py) and input checks (webui/inputs.py),
in-process on small images."""

from __future__ import annotations

import io
import zlib
from collections import deque

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
    grey = Image.new("LA", (4, 4), (90, 0))
    grey.putpixel((1, 2), (90, 200))
    assert cutout_from_alpha(grey).getchannel("A").getbbox() == (1, 2, 2, 3)
    palette = Image.new("P", (4, 4), 0)
    palette.putpixel((3, 3), 1)
    palette.info["transparency"] = 0  # palette entry 0 is transparent
    assert cutout_from_alpha(palette).getchannel("A").getbbox() == (3, 3, 4, 4)


def test_a_painted_brush_layer_marks_the_product_and_sizes_must_match() -> None:
    photo = Image.new("RGB", (40, 40), "white")
    strokes = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    strokes.paste(Image.new("RGBA", (10, 12), (255, 0, 255, 255)), (5, 6))
    assert cutout_from_mask(photo, strokes).getchannel("A").getbbox() == (5, 6, 15, 18)
    grey = Image.new("L", (40, 40), 0)
    grey.paste(255, (1, 2, 3, 4))
    assert cutout_from_mask(photo, grey).getchannel("A").getbbox() == (1, 2, 3, 4)  # bright = product
    opaque = Image.new("RGBA", (40, 40), (0, 0, 0, 255))  # black and white, saved with alpha
    opaque.paste((255, 255, 255, 255), (7, 8, 9, 10))
    assert cutout_from_mask(photo, opaque).getchannel("A").getbbox() == (7, 8, 9, 10)
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


def flood_from_border(near: np.ndarray) -> np.ndarray:
    """The test's own reference: a breadth-first fill, 4-connected, from every border pixel."""
    height, width = near.shape
    seen = np.zeros_like(near)
    queue = deque(
        (y, x) for y in range(height) for x in range(width) if y in (0, height - 1) or x in (0, width - 1)
    )
    while queue:
        y, x = queue.popleft()
        if 0 <= y < height and 0 <= x < width and near[y, x] and not seen[y, x]:
            seen[y, x] = True
            queue.extend(((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)))
    return seen


def test_plain_background_follows_winding_paths_but_not_diagonals() -> None:
    rng = np.random.default_rng(7)
    for density in (0.35, 0.5, 0.6):  # around the percolation threshold: mazes of background
        product = rng.random((41, 37)) < density
        border = np.ones_like(product)
        border[1:-1, 1:-1] = False
        product[border] = rng.random(border.sum()) < 0.3  # mostly white: the median stays white
        photo = np.where(product[..., None], (20, 20, 20), (255, 255, 255)).astype(np.uint8)
        alpha = np.asarray(cutout_plain_background(Image.fromarray(photo)).getchannel("A"))
        assert np.array_equal(alpha == 0, flood_from_border(~product))
    touching_corners = np.full((5, 5, 3), 255, np.uint8)
    touching_corners[1:4, 1:4] = 0
    touching_corners[2, 2] = 255  # white, reaching the background only diagonally
    touching_corners[1, 1] = 255
    alpha = np.asarray(cutout_plain_background(Image.fromarray(touching_corners)).getchannel("A"))
    assert alpha[1, 1] == 0 and alpha[2, 2] == 255


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
    for scale in (1.5, 0.05, float("nan"), "0.5"):
        with pytest.raises(RequestError, match=r"between 0\.1 and 1"):
            place(square(), 64, 64, scale=scale)  # type: ignore[arg-type]
    tiny = place(square(), 40, 40, scale=0.1)  # 4 px: small, still placed
    assert tiny.keep.getbbox() == (18, 18, 22, 22) and tiny.canvas.size == (40, 40)
    assert place(square(), 64, 48, position="frame").keep.size == (64, 48)


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


def test_a_key_colour_is_transparency_and_a_huge_header_is_named_a_bomb() -> None:
    keyed = Image.new("RGB", (20, 20), (0, 255, 0))
    keyed.paste(Image.new("RGB", (8, 8), (200, 0, 0)), (6, 6))
    keyed.info["transparency"] = (0, 255, 0)  # tRNS: green is transparent
    assert cutout_from_alpha(Image.open(io.BytesIO(png_bytes(keyed)))).getchannel("A").getbbox() == (
        6,
        6,
        14,
        14,
    )
    header = bytearray(png_bytes(Image.new("L", (1, 1))))
    header[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR: 100000 x 100000, far past Pillow's own limit
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")  # the chunk's checksum, made right
    with pytest.raises(RequestError, match="more pixels than the limit of 1,000,000"):
        read_image(bytes(header), "huge.png", 20, 10**6)
