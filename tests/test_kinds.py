"""Kinds of call on the real demo pipeline: shared weights, grouping, pixels that do not depend
on the call, and product shots whose product pixels are the input's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.helpers import make
from tests.test_lane import Calls, calls, hold_first_call, queue_behind  # noqa: F401 (fixture)
from webui.engine import RequestError
from webui.inputs import InputStore
from webui.jobs.execute import write_bundles
from webui.lane.kinds import Kinds
from webui.loading import LoadedModel
from webui.outputs import read_png_parameters
from webui.product import FEATHER_PX, place
from webui.request import PRODUCT, TEXT, VARIATION, GenerationRequest

SMALL = {"width": 64, "height": 64, "steps": 2}


def bottle(colour: tuple[int, int, int], size: tuple[int, int] = (40, 80)) -> Image.Image:
    """A cut-out product: an opaque rounded shape with a pattern, transparent around it."""
    image = Image.new("RGBA", (size[0] + 20, size[1] + 20), (0, 0, 0, 0))
    body = np.zeros((size[1], size[0], 4), np.uint8)
    body[..., :3] = colour
    body[::4, :, :3] = 255 - np.array(colour, np.uint8)  # stripes: resizing must keep them exact
    body[..., 3] = 255
    image.paste(Image.fromarray(body, "RGBA"), (10, 10))
    return image


@pytest.fixture
def store(tmp_path: Path) -> InputStore:
    return InputStore(tmp_path / "inputs")


def test_every_kind_shares_the_loaded_weights(demo_model: LoadedModel) -> None:
    kinds = Kinds(demo_model.pipe)
    base = demo_model.pipe
    for kind in (VARIATION, PRODUCT):
        pipe = kinds.pipe(kind)
        assert type(pipe) is not type(base) and kinds.pipe(kind) is pipe  # made once
        for name in ("transformer", "vae", "text_encoder"):
            ours, theirs = getattr(base, name), getattr(pipe, name)
            pointers = {p.data_ptr() for p in ours.parameters()}
            assert pointers == {p.data_ptr() for p in theirs.parameters()}, f"{kind}: {name} copied"


def test_product_shots_keep_every_product_pixel_and_group_by_product(engine, store: InputStore) -> None:
    products = [store.put(bottle((200, 40, 40))), store.put(bottle((30, 60, 200), (60, 30)))]
    request = GenerationRequest(
        ["on a beach", "in a kitchen", "on snow"],
        images_per_prompt=2,
        seed=5,
        kind=PRODUCT,
        inputs=products,
        input_names=["red bottle", "blue box"],
        **SMALL,
    )
    result = make(engine, request, inputs=store)
    record = result.record
    assert len(record.saved) == 12
    # Grouped: product, then scene, then variant; named after the product and the scene.
    assert [i.input_index for i in record.images] == [0] * 6 + [1] * 6
    assert [i.prompt_index for i in record.images[:6]] == [0, 0, 1, 1, 2, 2]
    assert record.images[0].file.startswith("001_red-bottle-on-a-beach_s5")
    assert record.label_of(record.images[7]) == "blue box: on a beach"
    write_bundles(record)  # what the job service does at the end: a row per product
    assert record.sheet_path.is_file() and record.zip_path.is_file()
    for image in record.images:
        placed = place(store.open(request.inputs[image.input_index]), 64, 64)
        inner = np.asarray(placed.keep.filter(ImageFilter.MinFilter(2 * FEATHER_PX + 1)), bool)
        out = np.asarray(Image.open(record.path_of(image)).convert("RGB"), np.int16)
        canvas = np.asarray(placed.canvas, np.int16)
        assert inner.sum() > 100
        assert np.abs(out[inner] - canvas[inner]).max() <= 1, "product pixels changed"
        background = ~np.asarray(placed.keep, bool)
        assert np.abs(out[background] - canvas[background]).mean() > 10, "no scene generated"
    first, second = (np.asarray(Image.open(record.path_of(record.images[k])), np.int16) for k in (0, 1))
    assert np.abs(first - second).mean() > 1, "two seeds gave the same scene"


def test_a_variation_runs_steps_times_strength_from_its_input(
    engine,
    store: InputStore,
    calls: Calls,  # noqa: F811
) -> None:
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))
    photo, flat = store.put(Image.fromarray(gradient, "RGB")), store.put(Image.new("RGB", (64, 64), "navy"))
    common = dict(kind=VARIATION, seed=3, width=64, height=64, steps=8)
    quarter = make(
        engine, GenerationRequest(["a lamp"], inputs=[photo], strength=0.25, **common), inputs=store
    )
    assert len(calls.sizes) == 2  # 8 steps x 0.25: the first six are skipped, as diffusers does
    other_input = make(
        engine, GenerationRequest(["a lamp"], inputs=[flat], strength=0.25, **common), inputs=store
    )
    full = make(engine, GenerationRequest(["a lamp"], inputs=[photo], strength=1.0, **common), inputs=store)
    assert len(calls.sizes) == 2 + 2 + 8
    first = np.asarray(quarter.images[0].image, np.int16)
    for other in (other_input, full):  # the input and the strength both change the picture
        assert np.abs(first - np.asarray(other.images[0].image, np.int16)).mean() > 1
    parameters = read_png_parameters(quarter.images[0].path)
    assert (parameters["kind"], parameters["strength"], parameters["inputs"]) == (VARIATION, 0.25, [photo])


def test_kinds_never_share_a_call_and_pixels_do_not_depend_on_the_call(
    make_engine,
    store: InputStore,
    calls: Calls,  # noqa: F811
) -> None:
    engine = make_engine(max_batch_size=4)
    product = store.put(bottle((10, 200, 10)))
    shot = dict(kind=PRODUCT, inputs=[product], seed=9, **SMALL)
    first, gate = hold_first_call(engine, GenerationRequest(["x"], seed=1, **SMALL), inputs=store)
    together = queue_behind(
        engine,
        GenerationRequest(["on grass", "on sand"], **shot),
        GenerationRequest(["y"], seed=2, **SMALL),
        GenerationRequest(["z"], seed=3, **SMALL),
        GenerationRequest(["a vase"], kind=VARIATION, inputs=[product], strength=0.5, seed=4, **SMALL),
        inputs=store,
    )
    gate.set()
    results = [first.join()] + [r.join() for r in together]
    assert [len(r.images) for r in results] == [1, 2, 1, 1, 1]
    kind_of = {r.record.id: r.record.request.kind for r in results}
    served = [{kind_of[job] for job, _ in call.served} for call in engine.stats.log]
    assert all(len(kinds) == 1 for kinds in served), served  # never two kinds in one call
    assert {TEXT} in served and {PRODUCT} in served and {VARIATION} in served
    assert any(len(call.served) > 1 for call in engine.stats.log)  # "y" and "z" did share one
    alone = make(
        engine, GenerationRequest(["on sand"], **{**shot, "seed": 10}), inputs=store
    )  # image 2: 9 + 1
    batched = np.asarray(results[1].images[1].image, np.int16)
    assert np.abs(batched - np.asarray(alone.images[0].image, np.int16)).max() <= 1


def test_inputs_are_checked_against_the_kind_before_any_work(engine, store: InputStore) -> None:
    product = store.put(bottle((1, 2, 3)))
    with pytest.raises(RequestError, match="take no input images"):
        engine.validate(GenerationRequest(["a"], inputs=[product], **SMALL))
    with pytest.raises(RequestError, match="needs at least one input image"):
        engine.validate(GenerationRequest(["a"], kind=PRODUCT, **SMALL))
    with pytest.raises(RequestError, match="Strength must be a number from 0 to 1"):
        engine.validate(GenerationRequest(["a"], kind=VARIATION, inputs=[product], strength=1.5, **SMALL))
    with pytest.raises(RequestError, match="runs no step"):
        engine.validate(GenerationRequest(["a"], kind=VARIATION, inputs=[product], strength=0.0, **SMALL))
    with pytest.raises(RequestError, match="Position must be one of center, bottom, frame"):
        engine.validate(GenerationRequest(["a"], kind=PRODUCT, inputs=[product], position="left", **SMALL))
    with pytest.raises(RequestError, match="Too many input images: 17"):
        engine.validate(GenerationRequest(["a"], kind=PRODUCT, inputs=[product] * 17, **SMALL))
