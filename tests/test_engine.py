"""The engine on the demo model: seeds, chunking, batch independence, progress, cancel, limits."""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make
from webui.engine import Engine, Progress, RequestError
from webui.loading import LoadedModel
from webui.outputs import read_manifest, read_png_parameters
from webui.request import GenerationRequest
from webui.settings import SEED_PER_VARIANT

SMALL = {"width": 32, "height": 32}


@pytest.fixture
def forwards(demo_model: LoadedModel) -> Iterator[list[int]]:
    """Batch size of every transformer forward the real pipeline makes, in order."""
    sizes: list[int] = []
    handle = demo_model.pipe.transformer.register_forward_hook(
        lambda module, args, output: sizes.append(len(args[0]))
    )
    yield sizes
    handle.remove()


@pytest.fixture
def encoder_calls(demo_model: LoadedModel) -> Iterator[list[int]]:
    """Batch size of every text-encoder call: one per pipeline call at guidance 0."""
    sizes: list[int] = []
    handle = demo_model.pipe.text_encoder.register_forward_hook(
        lambda module, args, kwargs, output: sizes.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    yield sizes
    handle.remove()


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_images_come_in_prompt_then_variant_order_with_seed_plus_k(engine: Engine) -> None:
    request = GenerationRequest(
        ["a red sneaker", "a navy mug", "an olive bag"], images_per_prompt=2, seed=100, steps=2, **SMALL
    )
    result = make(engine, request)

    assert result.seeds == (100, 101, 102, 103, 104, 105)
    assert [(i.prompt, i.variant, i.seed) for i in result.images] == [
        ("a red sneaker", 0, 100),
        ("a red sneaker", 1, 101),
        ("a navy mug", 0, 102),
        ("a navy mug", 1, 103),
        ("an olive bag", 0, 104),
        ("an olive bag", 1, 105),
    ]
    assert [i.index for i in result.images] == list(range(6))
    assert not result.cancelled and result.record.demo and result.record.model == "demo model"
    assert all(i.image.size == (32, 32) for i in result.images)


def test_same_seed_gives_same_pixels_and_other_seeds_differ(engine: Engine) -> None:
    request = GenerationRequest(["a red sneaker"], images_per_prompt=2, seed=7, steps=2, **SMALL)
    first = make(engine, request).images
    again = make(engine, request).images
    np.testing.assert_array_equal(pixels(first[0].image), pixels(again[0].image))
    assert np.abs(pixels(first[0].image) - pixels(first[1].image)).mean() > 5


def test_random_seed_is_drawn_reported_and_reproducible(engine: Engine) -> None:
    request = GenerationRequest(["a red sneaker"], images_per_prompt=2, seed=-1, steps=2, **SMALL)
    result = make(engine, request)
    other = make(engine, request)
    assert result.base_seed >= 0 and result.seeds == (result.base_seed, result.base_seed + 1)
    assert other.base_seed != result.base_seed  # 1 in 2**32 to fail by chance

    replay = GenerationRequest(
        ["a red sneaker"], images_per_prompt=2, seed=result.base_seed, steps=2, **SMALL
    )
    for made, remade in zip(result.images, make(engine, replay).images, strict=True):
        np.testing.assert_array_equal(pixels(made.image), pixels(remade.image))


def test_an_image_does_not_depend_on_its_batch(make_engine) -> None:
    engine = make_engine(max_batch_size=4)
    subject = "a red sneaker"
    long_prompt = (
        "a ceramic coffee mug with steam on a wooden table, morning light, shallow depth "
        "of field, product photo, studio lighting, soft shadow, 85mm lens, close up"
    )
    # Caption lengths must fall in different 32-token buckets, so the batch needs a mask.
    buckets = {-(-engine.count_tokens(p) // 32) for p in (long_prompt, subject)}
    assert len(buckets) == 2

    alone = make(engine, GenerationRequest([subject], seed=1234, **SMALL)).images[0]
    mixed = make(
        engine, GenerationRequest([long_prompt, "mug", subject, "a navy backpack"], seed=1232, **SMALL)
    ).images[2]

    assert (mixed.prompt, mixed.seed) == (subject, 1234)
    assert np.abs(pixels(alone.image) - pixels(mixed.image)).max() <= 2


def test_a_large_request_runs_as_chunks_of_at_most_max_batch_size(
    make_engine, forwards: list[int], encoder_calls: list[int]
) -> None:
    engine = make_engine(max_batch_size=4)
    request = GenerationRequest(
        [f"product {n}" for n in range(10)], images_per_prompt=4, seed=0, steps=1, **SMALL
    )
    result = make(engine, request)

    assert len(result.images) == 40
    assert engine.stats.calls == 10
    assert forwards == [4] * 10  # ten calls of four images, one step each
    assert encoder_calls == [1] * 10  # each call holds one prompt's variants: encoded once
    assert [i.seed for i in result.images] == list(range(40))


def test_progress_covers_every_step_of_every_chunk(make_engine) -> None:
    engine = make_engine(max_batch_size=4)
    events: list[Progress] = []
    make(
        engine,
        GenerationRequest(["a", "b", "c"], images_per_prompt=2, seed=0, steps=3, **SMALL),
        on_progress=events.append,
    )
    assert [(e.step, e.images_done, e.chunk_images) for e in events] == [
        (1, 0, 4),
        (2, 0, 4),
        (3, 0, 4),
        (1, 4, 2),
        (2, 4, 2),
        (3, 4, 2),
    ]
    assert all(e.steps == 3 and e.images_total == 6 for e in events)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancel_stops_at_the_next_step_and_keeps_finished_images(
    make_engine, forwards: list[int], tmp_path: Path
) -> None:
    engine = make_engine(max_batch_size=2)
    cancel = threading.Event()

    def cancel_in_second_chunk(progress: Progress) -> None:
        if progress.images_done == 2 and progress.step == 2:
            cancel.set()

    out = tmp_path / "cancelled"
    result = make(
        engine,
        GenerationRequest(["a", "b", "c"], images_per_prompt=2, seed=0, steps=4, **SMALL),
        on_progress=cancel_in_second_chunk,
        cancel=cancel,
        output_dir=out,
    )

    assert result.cancelled
    assert [i.seed for i in result.images] == [0, 1]
    assert result.seeds == (0, 1, 2, 3, 4, 5)
    # Chunk one ran its 4 steps; chunk two stopped after step 2 (the next step saw the flag).
    assert forwards == [2, 2, 2, 2, 2, 2]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(i.path.name for i in result.images), f"manifest-{result.request_id}.json"]
    )

    # The shared pipeline is left usable.
    after = make(engine, GenerationRequest(["a"], seed=0, steps=4, **SMALL))
    assert not after.cancelled
    np.testing.assert_array_equal(pixels(after.images[0].image), pixels(result.images[0].image))


def test_cancel_before_start_makes_nothing(engine: Engine, forwards: list[int]) -> None:
    cancel = threading.Event()
    cancel.set()
    result = make(engine, GenerationRequest(["a"], steps=2, **SMALL), cancel=cancel)
    assert result.cancelled and result.images == [] and forwards == []


def test_concurrent_requests_share_the_pipeline_one_call_at_a_time(
    engine: Engine, demo_model: LoadedModel
) -> None:
    requests = [
        GenerationRequest([f"item {n}"], images_per_prompt=3, seed=10 * n, steps=3, **SMALL) for n in range(3)
    ]
    expected = [make(engine, r) for r in requests]
    results: dict[int, object] = {}
    in_flight, most = [0], [0]  # transformer forwards running now, and at most

    def enter(module: object, args: object) -> None:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])

    def leave(module: object, args: object, output: object) -> None:
        in_flight[0] -= 1

    def run(n: int) -> None:
        results[n] = make(engine, requests[n])

    transformer = demo_model.pipe.transformer
    hooks = [transformer.register_forward_pre_hook(enter), transformer.register_forward_hook(leave)]
    logged_before = len(engine.stats.log)
    try:
        threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for hook in hooks:
            hook.remove()

    assert most[0] == 1  # never two forwards at once
    # The lane's own log: calls one after another, together serving every image of the three.
    calls = list(engine.stats.log)[logged_before:]
    assert all(a.ended <= b.started for a, b in itertools.pairwise(calls))
    served = {r.record.id: 0 for r in results.values()}
    for call in calls:
        for request_id, images in call.served:
            served[request_id] += images
    assert list(served.values()) == [3, 3, 3]
    assert any(len(call.served) > 1 for call in calls)  # shared calls: one pipeline, not one each

    for n, want in enumerate(expected):
        for got_image, want_image in zip(results[n].images, want.images, strict=True):
            np.testing.assert_array_equal(pixels(got_image.image), pixels(want_image.image))


def test_pngs_are_written_with_their_parameters(engine: Engine, tmp_path: Path) -> None:
    request = GenerationRequest(
        ["a red sneaker, front view", "ein grüner Stuhl"],
        seed=42,
        steps=2,
        guidance_scale=1.5,
        negative_prompt="blurry",
        **SMALL,
    )
    result = make(engine, request, output_dir=tmp_path / "set")

    for image in result.images:
        assert image.path.parent == tmp_path / "set" and image.path.suffix == ".png"
        assert read_png_parameters(image.path) == {
            "prompt": image.prompt,
            "negative_prompt": "blurry",
            "seed": image.seed,
            "width": 32,
            "height": 32,
            "steps": 2,
            "guidance_scale": 1.5,
            "model": "demo model",
            "request_id": result.request_id,
            "index": image.index,
            "seed_policy": "per-image",
        }
    assert [i.path.name for i in result.images] == [
        "001_a-red-sneaker-front-view_s42.png",
        "002_ein-grüner-stuhl_s43.png",  # letters kept in any script
    ]


def test_default_output_folder_is_one_per_request(engine: Engine, settings) -> None:
    first = make(engine, GenerationRequest(["a"], steps=1, **SMALL))
    second = make(engine, GenerationRequest(["a"], steps=1, **SMALL))
    assert first.output_dir != second.output_dir
    for result in (first, second):
        assert result.output_dir.is_relative_to(settings.output_dir)
        assert result.request_id in result.output_dir.name
        assert sorted(p.name for p in result.output_dir.iterdir()) == sorted(
            [result.images[0].path.name, "manifest.json"]
        )


def test_the_negative_prompt_only_matters_above_zero_guidance(
    engine: Engine, encoder_calls: list[int]
) -> None:
    base = dict(prompts=["a red sneaker"], seed=3, steps=2, **SMALL)
    plain = make(engine, GenerationRequest(**base)).images[0]
    ignored = make(engine, GenerationRequest(**base, negative_prompt="blurry")).images[0]
    np.testing.assert_array_equal(pixels(plain.image), pixels(ignored.image))
    assert encoder_calls == [1]  # no negative pass at guidance 0; the repeat came from the cache

    guided = make(engine, GenerationRequest(**base, guidance_scale=4.0, negative_prompt="blurry"))
    assert encoder_calls[1:] == [1]  # only the negative prompt was new
    assert np.abs(pixels(guided.images[0].image) - pixels(plain.image)).mean() > 1


def test_the_pipeline_gets_a_copy_of_the_prompt_list(engine: Engine) -> None:
    prompts = ["a red sneaker", "a navy mug"]
    request = GenerationRequest(prompts, steps=1, **SMALL)
    result = make(engine, request)
    assert prompts == ["a red sneaker", "a navy mug"]
    assert request.prompts == ("a red sneaker", "a navy mug")
    assert [i.prompt for i in result.images] == prompts  # not the chat-templated text


LONG = "studio product photo " * 200


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompts": []}, "No prompts"),
        ({"prompts": ["a"] * 11}, "Too many prompts: 11 (the limit is 10"),
        (
            {"prompts": ["a"] * 5, "images_per_prompt": 5},
            "Too many images: 5 prompts x 5 = 25 (the limit is 20",
        ),
        ({"images_per_prompt": 0}, "Images per prompt must be a whole number from 1 to 20"),
        ({"prompts": ["ok", "   "]}, "Prompt 2 is empty"),
        ({"prompts": [LONG]}, "Prompt 1 is"),
        ({"width": 1000}, "Width must be a multiple of 16 (got 1000; try 992 or 1008)"),
        ({"height": 4096}, "Height must be a whole number from 32 to 2048 (got 4096)"),
        ({"width": 0}, "Width must be a whole number from 32 to 2048"),
        ({"height": -64}, "Height must be a whole number from 32"),
        ({"steps": 0}, "Steps must be a whole number from 1 to 50 (got 0)"),
        ({"steps": 500}, "Steps must be a whole number from 1 to 50 (got 500)"),
        ({"guidance_scale": float("nan")}, "Guidance scale must be between 0 and 20"),
        ({"guidance_scale": -1.0}, "Guidance scale must be between 0 and 20"),
        ({"seed": -2}, "Seed must be -1 (random) or a whole number from 0"),
        ({"seed": 2**64}, "Seed must be -1 (random) or a whole number from 0"),
        ({"guidance_scale": 2.0, "negative_prompt": LONG}, "The negative prompt is"),
        ({"prompts": ["x" * 100_000]}, "Prompt 1 is 100,000 characters long; the limit is 16,384 characters"),
        (
            {"prompts": ["ok", "a red\x00sneaker"]},
            "Prompt 2 contains a control character or non-text byte (U+0000 at character 6)",
        ),
        ({"prompts": ["bell\x07"]}, "Prompt 1 contains a control character or non-text byte (U+0007"),
        (
            {"prompts": ["bytes \ufffd\ufffd"]},
            "Prompt 1 contains a control character or non-text byte (U+FFFD",
        ),
        ({"prompts": ["lone \ud800"]}, "Prompt 1 contains a control character or non-text byte (U+D800"),
    ],
)
def test_bad_requests_fail_before_any_work(
    make_engine, forwards: list[int], encoder_calls: list[int], changes: dict, message: str
) -> None:
    engine = make_engine(max_prompts=10, max_images=20)
    fields = {"prompts": ["a red sneaker"], "steps": 2, **SMALL, **changes}
    with pytest.raises(RequestError, match="^" + re.escape(message)):
        make(engine, GenerationRequest(**fields))
    assert forwards == [] and encoder_calls == []


def test_tabs_accents_and_emoji_are_plain_text(engine: Engine) -> None:
    engine.validate(
        GenerationRequest(["caf\u00e9\tcr\u00e8me, \u2764\ufe0f, \U0001f45f \u5496\u5561"], **SMALL)
    )


def test_the_token_limit_counts_the_chat_template(make_engine) -> None:
    engine = make_engine(max_prompt_tokens=20)
    prompt = "a red leather sneaker on a white seamless background"
    tokens = engine.count_tokens(prompt)
    assert tokens > len(engine.model.pipe.tokenizer(prompt)["input_ids"])  # template included
    if tokens <= 20:
        pytest.fail(f"test prompt too short for the limit ({tokens} tokens)")
    with pytest.raises(RequestError, match=f"Prompt 1 is {tokens} tokens long; the limit is 20"):
        engine.validate(GenerationRequest([prompt], **SMALL))
    engine.validate(GenerationRequest(["a sneaker"], **SMALL))


def test_over_512_tokens_is_refused_with_the_model_limit(engine: Engine) -> None:
    with pytest.raises(RequestError, match="the limit is 512 tokens"):
        engine.validate(GenerationRequest([LONG], **SMALL))


def test_every_engine_log_line_names_the_demo_model(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="webui"):
        result = make(engine, GenerationRequest(["a", "b"], images_per_prompt=3, seed=9, steps=1, **SMALL))
    lines = [r.getMessage() for r in caplog.records if r.name in ("webui.jobs.execute", "webui.lane.worker")]
    assert len(lines) == 4  # request, two pipeline calls, done
    assert all("demo model" in line and result.request_id in line for line in lines)
    assert "seeds 9..14" in lines[0]


def test_an_image_that_comes_out_black_or_nan_is_reported_and_not_saved(demo_model, engine: Engine) -> None:
    from webui.ui.text import summary

    decodes: list[int] = []

    def nan_for_the_second(module, args, output):  # the CPU decodes one image at a time
        decodes.append(1)
        return output * float("nan") if len(decodes) == 2 else output

    handle = demo_model.pipe.vae.decoder.register_forward_hook(nan_for_the_second)
    try:
        result = make(
            engine, GenerationRequest(["a red sneaker"], images_per_prompt=3, seed=20, steps=2, **SMALL)
        )
    finally:
        handle.remove()
    assert [i.seed for i in result.images] == [20, 22] and result.black_seeds == [21]
    assert not result.cancelled
    assert sorted(p.name for p in result.output_dir.glob("*.png")) == sorted(
        i.path.name for i in result.images
    )
    assert "1 image came out black and was not saved (seed 21)" in summary(result.record)


def test_new_seed_per_image_is_the_default_and_reproducible(engine: Engine) -> None:
    request = GenerationRequest(
        ["a red sneaker", "a navy sneaker"], images_per_prompt=2, seed=10, steps=2, **SMALL
    )
    first, again = make(engine, request), make(engine, request)
    assert [i.seed for i in first.images] == [10, 11, 12, 13] == list(first.seeds)
    for a, b in zip(first.images, again.images, strict=True):
        assert np.array_equal(pixels(a.image), pixels(b.image))


def test_same_seeds_for_every_prompt_give_variant_j_of_each_prompt_one_seed(engine: Engine) -> None:
    request = GenerationRequest(
        ["a red sneaker", "a red sneaker", "a navy sneaker"],
        images_per_prompt=3,
        seed=10,
        steps=2,
        seed_policy=SEED_PER_VARIANT,
        **SMALL,
    )
    result = make(engine, request)
    assert [i.seed for i in result.images] == [10, 11, 12] * 3
    red, red_again, navy = result.images[0:3], result.images[3:6], result.images[6:9]
    for j in range(3):  # the same prompt and seed: the same image; so the set differs only by prompt
        assert np.array_equal(pixels(red[j].image), pixels(red_again[j].image))
    assert not np.array_equal(pixels(red[0].image), pixels(red[1].image))  # variants still differ
    again = make(engine, request)
    assert all(
        np.array_equal(pixels(a.image), pixels(b.image)) for a, b in zip(navy, again.images[6:9], strict=True)
    )
    assert read_png_parameters(navy[1].path)["seed_policy"] == "per-variant"


def test_the_style_is_appended_to_every_prompt_and_saved_apart(engine: Engine) -> None:
    style = "studio lighting, white seamless background, 85mm"
    styled = make(engine, GenerationRequest(["a red sneaker"], seed=3, steps=2, style=style, **SMALL))
    spelled_out = make(engine, GenerationRequest([f"a red sneaker, {style}"], seed=3, steps=2, **SMALL))
    [image], [reference] = styled.images, spelled_out.images
    assert np.array_equal(pixels(image.image), pixels(reference.image))  # the model read the same text
    assert image.prompt == "a red sneaker" and image.path.name == "001_a-red-sneaker_s3.png"
    parameters = read_png_parameters(image.path)
    assert (parameters["prompt"], parameters["style"]) == ("a red sneaker", style)


def test_a_bad_style_is_refused_by_name(make_engine) -> None:
    engine = make_engine(max_prompt_tokens=40)
    with pytest.raises(RequestError, match=r"The style contains a control character .*U\+0007"):
        make(engine, GenerationRequest(["a red sneaker"], style="studio\x07", **SMALL))
    engine.validate(GenerationRequest(["a red sneaker"], style="studio lighting " * 10, **SMALL))  # 36 tokens
    # The limit holds for what the model reads: the prompt with the style.
    with pytest.raises(RequestError, match=r"Prompt 1 is \d+ tokens long; the limit is 40 tokens"):
        engine.validate(
            GenerationRequest(
                ["a red sneaker on a white seamless background"], style="studio lighting " * 10, **SMALL
            )
        )


def test_every_request_writes_a_manifest_next_to_its_images(engine: Engine) -> None:
    request = GenerationRequest(
        ["a {red} sneaker", "a navy mug"],
        images_per_prompt=2,
        seed=30,
        steps=2,
        style="studio lighting",
        seed_policy=SEED_PER_VARIANT,
        **SMALL,
    )
    result = make(engine, request, owner="alice")
    manifest = read_manifest(result.output_dir)
    made = {i.index: i for i in result.images}
    assert manifest == {
        "version": 2,
        "request_id": result.request_id,
        "created": manifest["created"],
        "status": "done",
        "error": None,
        "user": "alice",
        "client": None,
        "model": "demo model",
        "demo": True,
        "prompts": ["a {red} sneaker", "a navy mug"],
        "style": "studio lighting",
        "images_per_prompt": 2,
        "seed": 30,
        "seed_policy": "per-variant",
        "width": 32,
        "height": 32,
        "steps": 2,
        "guidance_scale": 0.0,
        "negative_prompt": "",
        "kind": "text",
        "inputs": [],
        "input_names": [],
        "strength": 0.6,
        "product_scale": 0.6,
        "position": "center",
        "loras": [],
        "images": [
            {
                "index": k,
                "prompt_index": made[k].prompt_index,
                "variant": made[k].variant,
                "seed": made[k].seed,
                "file": made[k].path.name,
                "state": "saved",
                "starred": False,
                "input_index": None,
                "prompt": made[k].prompt,
            }
            for k in range(4)
        ],
        "black_seeds": [],
        "started": manifest["started"],
        "finished": manifest["finished"],
        "elapsed_s": manifest["elapsed_s"],
        "images_per_s": manifest["images_per_s"],
        "resumed": 0,
        "crash_resumes": 0,
        "manifest_name": "manifest.json",
    }
    assert [(i["prompt_index"], i["variant"], i["seed"]) for i in manifest["images"]] == [
        (0, 0, 30),
        (0, 1, 31),
        (1, 0, 30),
        (1, 1, 31),
    ]
    assert all((result.output_dir / i["file"]).is_file() for i in manifest["images"])
    assert datetime.fromisoformat(manifest["created"]).tzinfo is not None and manifest["elapsed_s"] > 0


def test_a_stopped_request_says_so_in_its_manifest(engine: Engine) -> None:
    cancel = threading.Event()
    cancel.set()  # stopped before its first call
    result = make(engine, GenerationRequest(["a"], images_per_prompt=3, steps=2, **SMALL), cancel=cancel)
    manifest = read_manifest(result.output_dir)
    assert manifest["status"] == "stopped" and [i["state"] for i in manifest["images"]] == ["planned"] * 3
    assert not list(result.output_dir.glob("*.png"))
