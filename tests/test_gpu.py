"""On a CUDA GPU: the paths the CPU suite can only imitate. Skipped, with that reason, where
there is none (tests/conftest.py); `./launch.sh test -m gpu` runs only these.

Each test builds its own model on the GPU and frees it afterwards, so that a full-size one
does not stay in memory for the next.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from tests.helpers import make
from webui.engine import Engine
from webui.lane.calls import CallShape, PipelineCalls
from webui.loading import load_model
from webui.request import GenerationRequest
from webui.settings import FULL_RANDOM, Settings
from webui.speed import fp8_problem

pytestmark = pytest.mark.gpu


def pixels(result) -> np.ndarray:
    return np.stack([np.asarray(image.image, dtype=np.float32) for image in result.images])


@pytest.fixture
def on_gpu(settings: Settings) -> Iterator[Settings]:
    """The suite's settings with the model on the GPU in bf16; GPU memory freed afterwards."""
    yield dataclasses.replace(settings, device="cuda", dtype="bf16").validate()
    gc.collect()
    torch.cuda.empty_cache()


def test_the_full_size_model_with_random_weights_makes_a_512_image_that_is_not_black(
    on_gpu: Settings,
) -> None:
    model = load_model(dataclasses.replace(on_gpu, model=FULL_RANDOM))
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    result = make(
        Engine(model, on_gpu), GenerationRequest(["a red mug on oak"], seed=1, width=512, height=512)
    )
    [image] = pixels(result)
    assert image.shape == (512, 512, 3) and result.black_seeds == []
    assert image.std() > 1 and image.max() > 0  # random weights make noise, but not a black frame


def test_bf16_on_the_gpu_is_close_to_fp32_on_the_demo_model(on_gpu: Settings) -> None:
    request = GenerationRequest(["a red sneaker", "a blue mug"], seed=5, width=128, height=128)
    images = {}
    for dtype in ("fp32", "bf16"):
        changed = dataclasses.replace(on_gpu, dtype=dtype)
        model = load_model(changed)
        assert (
            model.pipe.transformer.dtype
            == model.dtype
            == (torch.bfloat16 if dtype == "bf16" else torch.float32)
        )
        images[dtype] = pixels(make(Engine(model, changed), request))
    bf16, fp32 = images["bf16"], images["fp32"]
    assert bf16.std() > 20  # a picture, not black or flat
    # The CPU test measured 0.4/255 on average; two different images differ by about 32/255.
    assert np.abs(bf16 - fp32).mean() < 2 and np.abs(fp32[0] - fp32[1]).mean() > 10


def test_the_compiled_warm_up_leaves_nothing_to_compile_for_requests(on_gpu: Settings) -> None:
    compiled = dataclasses.replace(on_gpu, compile=True)
    counters.clear()
    engine = Engine(load_model(compiled), compiled)  # compiles and warms up at start
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for prompts, size in ((["a", "b", "c"], 1024), (["a long prompt " * 30, "short"], 512), (["x"] * 4, 256)):
        make(engine, GenerationRequest(prompts, seed=3, width=size, height=size, steps=2))
        assert counters["stats"]["unique_graphs"] == graphs, f"recompiled for {len(prompts)} at {size}"


def test_fp8_weights_make_pictures_close_to_bf16_where_the_gpu_has_float8(on_gpu: Settings) -> None:
    problem = fp8_problem(torch.device("cuda"))
    if problem:
        pytest.skip(f"FP8 cannot run on this GPU: {problem}")
    request = GenerationRequest(["a red sneaker", "a blue mug"], seed=5, width=256, height=256)
    bf16 = pixels(make(Engine(load_model(on_gpu), on_gpu), request))
    fp8_settings = dataclasses.replace(on_gpu, quantize="fp8")
    fp8 = pixels(make(Engine(load_model(fp8_settings), fp8_settings), request))
    assert fp8.std() > 20 and np.abs(fp8 - bf16).mean() < 16  # the same pictures, roughly


def test_prompts_prefetched_on_their_own_cuda_stream_equal_those_encoded_on_the_lane(
    on_gpu: Settings,
) -> None:
    model = load_model(on_gpu)
    calls, alone = PipelineCalls(model), PipelineCalls(model)
    assert calls._stream is not None  # the encoder's own stream
    ahead = [f"a prefetched prompt {n}" for n in range(4)]
    prefetching = threading.Thread(target=calls.prefetch, args=(ahead,))
    prefetching.start()  # while a call runs on the default stream, as the lane does
    made = calls.run(["the running call"], [1], CallShape(256, 256, 8, 0.0, ""), lambda _: False)
    prefetching.join()
    assert made is not None and len(made) == 1
    for got, want in zip(calls.embed(ahead), alone.embed(ahead), strict=True):
        assert got.device.type == "cuda" and torch.allclose(got.float(), want.float(), atol=1e-3)
