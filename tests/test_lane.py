"""Cross-user batching in the lane: packing, pixels, fairness, Stop isolation, buckets, cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from tests.helpers import Result, make
from webui.engine import Engine, Progress, RequestError
from webui.lane.calls import PipelineCalls, to_pixels
from webui.loading import LoadedModel
from webui.request import GenerationRequest

SMALL = {"width": 32, "height": 32, "steps": 2}


@dataclass
class Calls:
    """What the real transformer saw, per forward: batch size, image sizes, caption lengths."""

    sizes: list[int] = field(default_factory=list)
    shapes: list[set] = field(default_factory=list)
    captions: list[list[int]] = field(default_factory=list)


@pytest.fixture
def calls(demo_model: LoadedModel) -> Iterator[Calls]:
    seen = Calls()

    def record(module, args, output) -> None:
        seen.sizes.append(len(args[0]))
        seen.shapes.append({tuple(x.shape) for x in args[0]})
        seen.captions.append([len(c) for c in args[2]])

    handle = demo_model.pipe.transformer.register_forward_hook(record)
    yield seen
    handle.remove()


class Running:
    """engine.generate on a thread of its own, like a second user's request."""

    def __init__(self, engine: Engine, request: GenerationRequest, **options) -> None:
        self.result: Result | None = None
        self.finished_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(engine, request, options))
        self.thread.start()

    def _run(self, engine: Engine, request: GenerationRequest, options: dict) -> None:
        self.result = make(engine, request, **options)
        self.finished_at = time.monotonic()

    def join(self) -> Result:
        self.thread.join(60)
        assert self.result is not None
        return self.result


def hold_first_call(engine: Engine, request: GenerationRequest, **options) -> tuple[Running, threading.Event]:
    """Start `request` and keep the lane inside its first call until the returned gate opens."""
    gate, inside = threading.Event(), threading.Event()
    report = options.pop("on_progress", None)

    def on_progress(progress: Progress) -> None:
        inside.set()
        gate.wait(30)
        if report is not None:
            report(progress)

    running = Running(engine, request, on_progress=on_progress, **options)
    assert inside.wait(30)
    return running, gate


def queue_behind(engine: Engine, *requests: GenerationRequest, **options) -> list[Running]:
    others = [Running(engine, r, **options) for r in requests]
    deadline = time.monotonic() + 30
    while engine.lane.job_count < len(requests) + 1:
        assert time.monotonic() < deadline, "requests did not reach the lane"
        time.sleep(0.01)
    return others


def pixels(result: Result, n: int = 0) -> np.ndarray:
    return np.asarray(result.images[n].image, dtype=np.int16)


def test_requests_of_different_users_share_calls_fairly_with_unchanged_pixels(
    make_engine, calls: Calls
) -> None:
    engine = make_engine(max_batch_size=4)
    long = GenerationRequest(["a long request"], images_per_prompt=8, seed=100, **SMALL)
    short_b = GenerationRequest(["short b"], seed=200, **SMALL)
    short_c = GenerationRequest(["short c, another prompt"], seed=300, **SMALL)
    alone = [make(engine, r) for r in (short_b, short_c)]
    calls.sizes.clear()

    first, gate = hold_first_call(engine, long)
    b, c = queue_behind(engine, short_b, short_c)
    gate.set()
    results = [first.join(), b.join(), c.join()]

    # Call 1: four of the long request. Call 2: one from each request in turn, then the long
    # one again. Call 3: the long request's last two. Two steps each.
    assert calls.sizes == [4, 4, 4, 4, 2, 2]
    assert [len(r.images) for r in results] == [8, 1, 1]
    assert max(b.finished_at, c.finished_at) < first.finished_at  # not starved by the long one
    for together, by_itself in zip(results[1:], alone, strict=True):
        assert np.abs(pixels(together) - pixels(by_itself)).max() <= 2
        assert together.images[0].seed == by_itself.images[0].seed
    assert [i.seed for i in results[0].images] == list(range(100, 108))


def test_more_waiting_requests_than_one_call_holds_all_finish(make_engine, calls: Calls) -> None:
    engine = make_engine(max_batch_size=4)
    first, gate = hold_first_call(engine, GenerationRequest(["first"], seed=0, **SMALL))
    others = queue_behind(engine, *[GenerationRequest([f"user {n}"], seed=n, **SMALL) for n in range(1, 7)])
    gate.set()
    results = [first.join(), *(r.join() for r in others)]
    assert [[i.seed for i in r.images] for r in results] == [[n] for n in range(7)]
    assert calls.sizes == [1, 1, 4, 4, 2, 2]  # the held call, then 4 + 2 of the six waiting


def test_with_cross_batching_off_requests_run_one_after_the_other(make_engine, calls: Calls) -> None:
    engine = make_engine(max_batch_size=4, cross_batching=False)
    first, gate = hold_first_call(engine, GenerationRequest(["long"], images_per_prompt=8, seed=1, **SMALL))
    b, c = queue_behind(
        engine, GenerationRequest(["b"], seed=2, **SMALL), GenerationRequest(["c"], seed=3, **SMALL)
    )
    gate.set()
    first.join(), b.join(), c.join()
    assert calls.sizes == [4, 4, 4, 4, 1, 1, 1, 1]
    assert b.finished_at > first.finished_at


def test_incompatible_requests_never_share_a_call(make_engine, calls: Calls) -> None:
    engine = make_engine(max_batch_size=4)
    first, gate = hold_first_call(engine, GenerationRequest(["a"], images_per_prompt=2, seed=1, **SMALL))
    wide = GenerationRequest(["b"], images_per_prompt=2, seed=1, width=48, height=32, steps=2)
    more_steps = GenerationRequest(["c"], images_per_prompt=2, seed=1, width=32, height=32, steps=3)
    others = queue_behind(engine, wide, more_steps)
    gate.set()
    assert [len(r.join().images) for r in (first, *others)] == [2, 2, 2]
    assert all(len(shapes) == 1 for shapes in calls.shapes)  # one image size per forward
    assert calls.sizes == [2, 2, 2, 2, 2, 2, 2]  # 2 + 2 + 3 steps, never mixed


def test_stopping_one_request_does_not_hurt_the_one_sharing_its_call(make_engine, calls: Calls) -> None:
    engine = make_engine(max_batch_size=4)
    steps4 = {"width": 32, "height": 32, "steps": 4}
    partner = GenerationRequest(["the partner"], images_per_prompt=2, seed=50, **steps4)
    alone = make(engine, partner)
    calls.sizes.clear()

    stop = threading.Event()

    def stop_in_second_call(progress: Progress) -> None:
        if progress.images_done == 4 and progress.step == 1:
            stop.set()

    first, gate = hold_first_call(
        engine,
        GenerationRequest(["stopped"], images_per_prompt=8, seed=1, **steps4),
        on_progress=stop_in_second_call,
        cancel=stop,
    )
    [other] = queue_behind(engine, partner)
    gate.set()
    stopped, finished = first.join(), other.join()

    assert stopped.cancelled and [i.seed for i in stopped.images] == [1, 2, 3, 4]
    assert not finished.cancelled and len(finished.images) == 2
    assert calls.sizes == [4] * 4 + [4] * 4  # the shared call ran all its steps; nothing after
    for n in range(2):
        assert np.abs(pixels(finished, n) - pixels(alone, n)).max() <= 2
    assert sorted(p.name for p in stopped.output_dir.glob("*.png")) == sorted(
        i.path.name for i in stopped.images
    )


def test_maskless_backends_get_one_caption_bucket_per_call(make_engine, calls: Calls) -> None:
    # The lane plans for flash attention (no masks); the demo model itself runs SDPA here.
    engine = make_engine(max_batch_size=4, attention_backend="flash")
    short, long = (
        "mug",
        "a ceramic coffee mug with steam on a wooden table, soft morning light, 85mm lens, close up",
    )
    assert -(-engine.count_tokens(short) // 32) != -(-engine.count_tokens(long) // 32)
    result = make(engine, GenerationRequest([short, long, short, long], seed=0, **SMALL))
    assert [i.prompt for i in result.images] == [short, long, short, long]
    assert calls.sizes == [2, 2, 2, 2]
    for lengths in calls.captions:
        assert len({-(-n // 32) for n in lengths}) == 1


def test_prompts_are_encoded_once_and_repeats_come_from_the_cache(
    demo_model: LoadedModel, make_engine
) -> None:
    encoded: list[int] = []
    handle = demo_model.pipe.text_encoder.register_forward_hook(
        lambda m, a, kw, out: encoded.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        engine = make_engine(max_batch_size=8)
        make(engine, GenerationRequest(["red sneaker", "navy sneaker"], images_per_prompt=4, seed=0, **SMALL))
        assert encoded == [2]  # eight images, two texts
        make(engine, GenerationRequest(["navy sneaker", "olive sneaker"], seed=0, **SMALL))
        assert encoded == [2, 1]  # only the new text
    finally:
        handle.remove()


def test_out_of_memory_retries_in_smaller_calls_with_unchanged_pixels(
    demo_model: LoadedModel, make_engine, calls: Calls
) -> None:
    engine = make_engine(max_batch_size=4)
    request = GenerationRequest(
        ["a red sneaker", "a navy mug", "an olive bag"], images_per_prompt=2, seed=7, **SMALL
    )
    alone = make(engine, request)

    def too_big(module, args) -> None:
        if len(args[0]) > 2:  # a forward of more than two images runs out of memory
            raise torch.OutOfMemoryError("injected: out of memory")

    handle = demo_model.pipe.transformer.register_forward_pre_hook(too_big)
    try:
        calls.sizes.clear()
        result = make(engine, request)
    finally:
        handle.remove()
    assert [i.seed for i in result.images] == [i.seed for i in alone.images] == list(range(7, 13))
    assert calls.sizes and max(calls.sizes) <= 2  # every forward that ran held at most two images
    for n in range(6):
        assert np.abs(pixels(result, n) - pixels(alone, n)).max() <= 2
    assert engine.lane.call_limit == 4  # back to full calls once idle


def test_out_of_memory_for_one_image_fails_the_request_with_advice_and_the_next_runs(
    demo_model: LoadedModel, make_engine
) -> None:
    engine = make_engine(max_batch_size=4)

    def always(module, args) -> None:
        raise torch.OutOfMemoryError("injected: out of memory")

    handle = demo_model.pipe.transformer.register_forward_pre_hook(always)
    try:
        with pytest.raises(
            RequestError, match=r"Out of memory even for one 32x32 image .* lower ZIMAGE_MAX_BATCH_SIZE"
        ):
            make(engine, GenerationRequest(["a red sneaker"], images_per_prompt=3, seed=1, **SMALL))
    finally:
        handle.remove()
    assert len(make(engine, GenerationRequest(["a red sneaker"], seed=1, **SMALL)).images) == 1


def test_the_gpu_way_of_decoding_gives_the_cpu_ways_pixels(demo_model) -> None:
    # The device-side decode (one batched decode, pixels made where the VAE runs) forced on the
    # CPU, against the CPU's way (one image at a time, pixels made later by the saver).
    calls = PipelineCalls(demo_model)
    latents = torch.randn(3, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    on_device = calls.decode(latents, on_device=True)
    by_saver = [to_pixels(decoded) for decoded in calls.decode(latents, on_device=False)]
    assert [p.shape for p in on_device] == [(128, 128, 3)] * 3 and on_device[0].dtype == torch.uint8
    for gpu_way, cpu_way in zip(on_device, by_saver, strict=True):
        assert (gpu_way.int() - cpu_way.int()).abs().max() <= 1  # within 1/255
    assert (on_device[0].int() - on_device[1].int()).abs().max() > 1  # different latents, different pixels
