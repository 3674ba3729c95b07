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
    if image.mode == "P" and "transparency" in image.info:
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
    painted = mask.getchannel("A") if mask.mode in ("RGBA", "LA", "PA") else mask.convert("L")
    return _with_alpha(image, painted)


def cutout_plain_background(image: Image.Image, tolerance: int = PLAIN_TOLERANCE) -> Image.Image:
    """A cut-out of a product shot on a plain background: the border's colour (its median), and
    every pixel near that colour and connected to the border through such pixels, removed.
    Parts of the product in the background's colour but enclosed by it stay."""
    rgb = np.asarray(image.convert("RGB"), np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    colour = np.median(border, axis=0).round().astype(np.int16)
    near = np.abs(rgb - colour).max(axis=2) <= tolerance
    background = _reached_from_border(near)
    return _with_alpha(image, Image.fromarray(np.where(background, 0, 255).astype(np.uint8), "L"))


def _reached_from_border(near: np.ndarray) -> np.ndarray:
    """The `near` pixels 4-connected to the image's border through `near` pixels.

    A pixel-by-pixel flood fill (ImageDraw.floodfill) runs in Python: seconds for a 2000x2000
    photo. Instead, whole runs of `near` pixels along rows, then along columns, are reached at
    once (a run touched anywhere is reached everywhere), alternating until nothing changes:
    each sweep is a few numpy passes, and a background needs as many sweeps as its paths to
    the border have turns (a handful for photos; a maze would need more, still correct)."""
    rows = _run_labels(near)
    columns = _run_labels(near.T).T
    reached = np.zeros_like(near)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        reached[edge] = near[edge]
    count = -1
    while count != (count := int(reached.sum())):
        for labels in (rows, columns):
            hit = np.zeros(int(labels.max()) + 1, bool)
            hit[labels[reached]] = True
            hit[0] = False  # label 0: not near, never reached
            reached = hit[labels]
    return reached


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
    if not 0.1 <= scale <= 1:
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
