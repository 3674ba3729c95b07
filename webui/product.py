"""Product in scene: the product's own pixels kept, a scene generated around it.

A cut-out is an RGBA image whose opaque pixels (alpha >= 128) are the product. It comes from
an image's transparency, from a painted mask, or from a plain background removed. `place`
puts it in the output frame and gives the pipeline its mask (white = generate); after
decoding, `composite` lays the placed product back over the generated image through a weight
that is exactly 1 inside the product eroded by FEATHER_PX and fades to 0 at its outline,
so the product's pixels are the input's and its edge blends into the scene (what product-photo
services and the usual ComfyUI workflow do after inpainting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from webui.request import POSITIONS, RequestError
from webui.words import words

FEATHER_PX = 3  # the soft edge between product and scene, in pixels
DEFAULT_SCALE, DEFAULT_POSITION = 0.6, "center"
BOTTOM_MARGIN = 0.06  # "bottom": the product stands this share of the height above the edge
PLAIN_TOLERANCE = 32  # "plain background": per-channel distance still counted as background
CANVAS_GREY = (128, 128, 128)  # under the generated area: the pipeline repaints it all


def _binary(alpha: Image.Image) -> Image.Image:
    return alpha.point(lambda v: 255 if v >= 128 else 0)


def _with_alpha(image: Image.Image, alpha: Image.Image) -> Image.Image:
    cutout = image.convert("RGB").convert("RGBA")
    cutout.putalpha(_binary(alpha))
    return cutout


def cutout_from_alpha(image: Image.Image) -> Image.Image:
    """A cut-out from an image's own transparency."""
    if "transparency" in image.info:  # a palette's, or a grey or RGB image's key colour (tRNS)
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA"):
        raise RequestError("no_transparency")
    return _with_alpha(image, image.getchannel("A"))


def cutout_from_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A cut-out from a photo and a mask of its size: the mask's opaque (or, without alpha,
    bright) pixels are the product, as brush strokes on a transparent layer are."""
    if image.size != mask.size:
        raise RequestError(
            "mask_size", image="x".join(map(str, image.size)), mask="x".join(map(str, mask.size))
        )
    if mask.mode == "P":
        mask = mask.convert("RGBA")
    painted = mask.convert("L")
    if mask.mode in ("RGBA", "LA", "PA"):
        alpha = mask.getchannel("A")
        # Opaque everywhere, the alpha tells nothing: a black-and-white mask saved with an
        # alpha channel, whose brightness marks the product.
        if alpha.getextrema()[0] < 255:
            painted = alpha
    return _with_alpha(image, painted)


def cutout_plain_background(image: Image.Image, tolerance: int = PLAIN_TOLERANCE) -> Image.Image:
    """A cut-out of a product shot on a plain background: the border's colour (its median), and
    every pixel near that colour and connected to the border through such pixels, removed.
    Parts of the product in the background's colour but enclosed by it stay."""
    rgb = np.asarray(image.convert("RGB"))
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    near = np.ones(rgb.shape[:2], bool)
    for channel, value in enumerate(np.median(border, axis=0)):
        # A table of the 256 levels near this channel's value: one lookup per pixel, no
        # widening of the whole image to signed integers.
        table = np.abs(np.arange(256) - value) <= tolerance
        near &= table[rgb[..., channel]]
    background = _reached_from_border(near)
    return _with_alpha(image, Image.fromarray(np.where(background, 0, 255).astype(np.uint8), "L"))


def _reached_from_border(near: np.ndarray) -> np.ndarray:
    """The `near` pixels 4-connected to the image's border through `near` pixels.

    A pixel-by-pixel flood fill (ImageDraw.floodfill) runs in Python: seconds for a 2000x2000
    photo. Here the nodes are the horizontal runs of `near` pixels, joined where runs in
    adjacent rows touch, and node 0 stands for the border, joined to every run that reaches
    it; the runs in node 0's component are the background. Noise near the tolerance makes
    a maze of runs, which this handles in the same few numpy passes."""
    rows = _run_labels(near)
    above, below = rows[:-1], rows[1:]
    touching = (above > 0) & (below > 0)
    # One edge per stretch where the same two runs touch, not one per pixel of it.
    touching[:, 1:] &= (above[:, 1:] != above[:, :-1]) | (below[:, 1:] != below[:, :-1])
    edge = np.concatenate([rows[0], rows[-1], rows[:, 0], rows[:, -1]])
    edge = edge[edge > 0]
    first = np.concatenate([above[touching], np.zeros(edge.size, np.int32)])
    second = np.concatenate([below[touching], edge])
    root = _components(first, second, int(rows.max()) + 1)
    return near & (root[rows] == 0)


def _components(first: np.ndarray, second: np.ndarray, nodes: int) -> np.ndarray:
    """Each node's component as its smallest node, for the edges first[i]-second[i].

    Hook and compress, vectorised: every root with an edge to a smaller root points to the
    smallest such, then pointer jumping flattens the trees; a few rounds, each O(edges)."""
    parent = np.arange(nodes)
    while True:
        a, b = parent[first], parent[second]
        low, high = np.minimum(a, b), np.maximum(a, b)
        apart = low != high
        if not apart.any():
            return parent
        # Roots only: after compressing, parent[x] is x's root, so `high` is a root here
        # and pointing it to a smaller node can make no cycle.
        np.minimum.at(parent, high[apart], low[apart])
        while not np.array_equal(jumped := parent[parent], parent):
            parent = jumped


def _run_labels(near: np.ndarray) -> np.ndarray:
    """Each horizontal run of `near` pixels numbered from 1; 0 elsewhere."""
    height, width = near.shape
    padded = np.zeros((height, width + 1), bool)  # a gap after each row: runs never wrap
    padded[:, :width] = near
    flat = padded.ravel()
    starts = flat.copy()
    starts[1:] &= ~flat[:-1]
    labels = np.where(flat, np.cumsum(starts, dtype=np.int32), 0)
    return labels.reshape(height, width + 1)[:, :width]


def check_cutout(cutout: Image.Image) -> None:
    """Refuse a cut-out with no product, or with nothing around it to generate."""
    low, high = cutout.getchannel("A").getextrema()
    if high < 128:
        raise RequestError("nothing_to_keep")
    if low >= 128:
        raise RequestError("nothing_to_generate")


@dataclass(frozen=True)
class Placed:
    """A cut-out placed in the output frame."""

    canvas: Image.Image  # RGB: the product where it stands, grey elsewhere
    keep: Image.Image  # "L": 255 on the placed product
    generate: Image.Image  # "L": 255 where the pipeline generates (reaching FEATHER_PX into the rim)
    blend: Image.Image  # "L": the placed product's weight when composited back


def place(
    cutout: Image.Image,
    width: int,
    height: int,
    scale: float = DEFAULT_SCALE,
    position: str = DEFAULT_POSITION,
) -> Placed:
    """The cut-out in a width x height frame: its longer side `scale` of the frame's shorter
    side, centred or standing on the lower edge; `frame`: the whole image fills the frame."""
    if position not in POSITIONS:
        raise RequestError(
            "choice", name=words("name_position"), choices=", ".join(POSITIONS), value=position
        )
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
    if not (number and 0.1 <= scale <= 1):  # NaN fails the comparison too
        raise RequestError("scale_range", value=scale)
    cutout = cutout.convert("RGBA")
    canvas = Image.new("RGBA", (width, height), (*CANVAS_GREY, 0))
    if position == "frame":
        canvas = cutout.resize((width, height), Image.Resampling.LANCZOS)
    else:
        box = cutout.getchannel("A").point(lambda v: 255 if v >= 128 else 0).getbbox()
        product = cutout.crop(box) if box else cutout
        longer = max(1, round(scale * min(width, height)))
        ratio = longer / max(product.size)
        size = (max(1, round(product.width * ratio)), max(1, round(product.height * ratio)))
        product = product.resize(size, Image.Resampling.LANCZOS)
        left = (width - size[0]) // 2
        top = (
            (height - size[1]) // 2
            if position == "center"
            else height - round(BOTTOM_MARGIN * height) - size[1]
        )
        canvas.alpha_composite(product, (left, max(0, top)))
    keep = _binary(canvas.getchannel("A"))
    background = Image.new("RGB", (width, height), CANVAS_GREY)
    rgb = Image.composite(canvas.convert("RGB"), background, keep)
    inner = keep.filter(ImageFilter.MinFilter(2 * FEATHER_PX + 1))
    blend = ImageChops.lighter(inner.filter(ImageFilter.BoxBlur(FEATHER_PX)), inner)
    return Placed(rgb, keep, ImageChops.invert(inner), blend)


def composite(generated: Image.Image, placed: Placed) -> Image.Image:
    """The generated image with the placed product laid back over it through its blend."""
    return Image.composite(placed.canvas, generated.convert("RGB"), placed.blend)


def preview(cutout: Image.Image, size: int = 256) -> Image.Image:
    """The cut-out over a light checkerboard, for the page to show before Generate."""
    shown = cutout.convert("RGBA")
    shown.thumbnail((size, size))
    cells = (np.indices((shown.height, shown.width)) // 8).sum(axis=0) % 2  # 8-pixel squares
    board = np.where(cells[..., None] == 0, 235, 205).astype(np.uint8).repeat(3, axis=2)
    checker = Image.fromarray(board, "RGB").convert("RGBA")
    checker.alpha_composite(shown)
    return checker.convert("RGB")
