"""Input images over the HTTP APIs of a real server: product shots and variations through
REST (base64 in JSON), OpenAI's `/v1/images/edits` through the official `openai` package, and
every bad input refused with the page's words before any job exists."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import BadRequestError, OpenAI
from PIL import Image, ImageFilter

from tests.helpers import Server, running_server, wait_for
from webui.inputs import prepare_input
from webui.product import FEATHER_PX, place
from webui.request import PRODUCT
from webui.settings import Settings

SMALL = {"width": 64, "height": 64, "steps": 2}
LIMITS = {"max_input_mb": "0.5", "max_input_pixels": "1000000", "max_input_images": "3"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("images"), cache_dir, **LIMITS) as running:
        yield running


def png(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def product(colour: tuple[int, int, int], size: tuple[int, int] = (30, 50)) -> Image.Image:
    """A transparent PNG cut-out with stripes (kept pixels must come back exactly)."""
    image = Image.new("RGBA", (size[0] + 16, size[1] + 16), (0, 0, 0, 0))
    body = np.zeros((size[1], size[0], 4), np.uint8)
    body[..., :3], body[..., 3] = colour, 255
    body[::3, :, :3] = 255 - np.array(colour, np.uint8)
    image.paste(Image.fromarray(body, "RGBA"), (8, 8))
    return image


def post(server: Server, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        raw = response.read()
        return (
            json.loads(raw)
            if response.headers.get("Content-Type", "").startswith("application/json")
            else raw
        )


def finished(server: Server, job_id: str) -> dict[str, Any]:
    url = f"{server.url}api/v1/jobs/{job_id}"
    wait_for(lambda: get(url)["status"] in ("done", "failed", "stopped"), 120, f"job {job_id}")
    return get(url)


def kept_exactly(picture: Image.Image, cutout: Image.Image, width: int, height: int, **placing: Any) -> None:
    """Every pixel of the placed product (eroded by the feather) is the input's within 1/255."""
    placed = place(cutout, width, height, **placing)
    inner = np.asarray(placed.keep.filter(ImageFilter.MinFilter(2 * FEATHER_PX + 1)), bool)
    out = np.asarray(picture.convert("RGB"), np.int16)
    assert inner.sum() > 50
    assert np.abs(out[inner] - np.asarray(placed.canvas, np.int16)[inner]).max() <= 1


def test_a_product_line_in_every_scene_over_rest_keeps_each_product(server: Server) -> None:
    shots = [product((220, 30, 30)), product((20, 40, 200), (50, 24))]
    body = {
        "prompts": "on a beach\nin a kitchen\non snow",
        "images_per_prompt": 2,
        "seed": 11,
        "kind": "product",
        "position": "bottom",
        "images": [
            {"data": b64(png(s)), "name": n} for s, n in zip(shots, ("red bottle", "blue box"), strict=True)
        ],
        **SMALL,
    }
    status, job = post(server, "api/v1/jobs", body)
    assert status == 202, job
    done = finished(server, job["id"])
    assert done["status"] == "done" and done["kind"] == "product" and len(done["images"]) == 12
    assert [i["input"] for i in done["images"]] == ["red bottle"] * 6 + ["blue box"] * 6
    assert [i["prompt"] for i in done["images"][:6]] == ["on a beach"] * 2 + ["in a kitchen"] * 2 + [
        "on snow"
    ] * 2
    settings = Settings()
    for entry in done["images"]:
        picture = Image.open(io.BytesIO(get(entry["url"])))
        cutout = prepare_input(PRODUCT, png(shots[0 if entry["input"] == "red bottle" else 1]), "x", settings)
        kept_exactly(picture, cutout, 64, 64, position="bottom")


def test_a_product_on_white_is_cut_out_by_its_plain_background(server: Server) -> None:
    photo = Image.new("RGB", (80, 80), "white")
    photo.paste(Image.new("RGB", (30, 40), (10, 120, 60)), (25, 20))
    status, job = post(
        server,
        "api/v1/jobs",
        {
            "prompts": ["on marble"],
            "kind": "product",
            "images": [{"data": b64(png(photo)), "cutout": "plain"}],
            **SMALL,
        },
    )
    assert status == 202, job
    [entry] = finished(server, job["id"])["images"]
    cutout = prepare_input(PRODUCT, png(photo), "x", Settings(), cutout="plain")
    assert cutout.getchannel("A").getbbox() == (25, 20, 55, 60)  # the white went, the product stayed
    kept_exactly(Image.open(io.BytesIO(get(entry["url"]))), cutout, 64, 64)


def test_variations_take_a_reference_photo_and_a_strength(server: Server) -> None:
    photo = Image.effect_noise((64, 64), 60).convert("RGB")
    body = {
        "prompts": ["a lamp"],
        "kind": "variation",
        "strength": 0.5,
        "images": [{"data": b64(png(photo, "JPEG"))}],
    }
    status, job = post(server, "api/v1/jobs", {**body, **SMALL, "steps": 4, "images_per_prompt": 2})
    assert status == 202, job
    done = finished(server, job["id"])
    assert [i["input"] for i in done["images"]] == ["image 1", "image 1"]


def bomb() -> bytes:
    """A small file that decodes to 4000x4000 pixels (16 million: over the server's 1 million)."""
    return png(Image.new("L", (4000, 4000)))


def refusals() -> list[tuple[dict[str, Any], str]]:
    opaque = Image.new("RGBA", (40, 40), (200, 0, 0, 255))
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    big = png(Image.effect_noise((600, 600), 90).convert("RGB"))  # about 1 MB: over 0.5 MB
    one = {"data": b64(png(product((1, 2, 3))))}
    return [
        ({"images": [{"data": b64(b"not an image at all")}]}, "is not an image that can be read"),
        (
            {"images": [{"data": b64(gif.getvalue())}]},
            "is a GIF file; input images must be PNG, JPEG or WebP",
        ),
        ({"images": [{"data": b64(big)}]}, "the limit is 0.5 MB per input image"),
        ({"images": [{"data": b64(bomb())}]}, "4000x4000 pixels; the limit is 1,000,000 pixels"),
        ({"images": [one] * 4}, "Too many input images: 4 (the limit is 3 per request)"),
        (
            {"images": [{**one, "mask": b64(png(Image.new("L", (5, 5))))}]},
            "The mask is 5x5 but the image is 46x66",
        ),
        ({"images": [{"data": b64(png(clear))}]}, "Nothing to keep"),
        ({"images": [{"data": b64(png(opaque))}]}, "Nothing to generate"),
        ({"images": [{"data": b64(png(opaque.convert("RGB")))}]}, "has no transparent pixels"),
        ({"images": [{"data": "@@@"}]}, "is not valid base64"),
        ({"images": [one], "kind": "variation", "strength": 1.5}, "Strength must be a number from 0 to 1"),
        ({"images": [one], "position": "left"}, "Position must be one of center, bottom, frame"),
        ({"images": [one], "kind": "text"}, "Text-to-image jobs take no input images"),
        ({"images": []}, "Kind 'product' needs at least one input image"),
    ]


def test_every_bad_input_is_refused_over_rest_before_any_job(server: Server) -> None:
    before = len(get(server.url + "api/v1/jobs"))
    for changes, words in refusals():
        body = {"prompts": ["a scene"], "kind": "product", **SMALL, **changes}
        status, answer = post(server, "api/v1/jobs", body)
        assert (status, words in answer["error"]["message"]) == (400, True), (words, answer)
    assert len(get(server.url + "api/v1/jobs")) == before


def test_openai_edits_keep_the_masks_opaque_pixels_through_the_openai_package(server: Server) -> None:
    client = OpenAI(base_url=server.url + "v1", api_key="unused: no login on this server")
    photo = Image.effect_noise((64, 64), 80).convert("RGB")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent: generate
    mask.paste(Image.new("RGBA", (24, 30), (0, 0, 0, 255)), (20, 17))  # opaque: keep
    result = client.images.edit(
        image=("photo.png", png(photo), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="on a wooden table",
        n=2,
        size="64x64",
        extra_body={"seed": 5, "steps": 2},
    )
    pictures = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert len(pictures) == 2 and pictures[0].tobytes() != pictures[1].tobytes()
    cutout = prepare_input(PRODUCT, png(photo), "x", Settings(), mask=png(mask))
    for picture in pictures:
        kept_exactly(picture, cutout, 64, 64, position="frame")
        outside = np.asarray(mask.getchannel("A")) == 0
        assert (
            np.abs(np.asarray(picture, np.int16)[outside] - np.asarray(photo, np.int16)[outside]).mean() > 5
        )
    # Without a mask, the image's own transparent pixels are the area to generate.
    alone = client.images.edit(
        image=("cut.png", png(product((0, 90, 0))), "image/png"), prompt="x", size="64x64"
    )
    assert len(alone.data) == 1
    with pytest.raises(BadRequestError, match="is a GIF file"):
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, "GIF")
        client.images.edit(image=("a.gif", gif.getvalue(), "image/gif"), prompt="x", size="64x64")
    with pytest.raises(BadRequestError, match="has no transparent pixels"):
        client.images.edit(image=("p.png", png(photo), "image/png"), prompt="x", size="64x64")


def test_reuse_brings_the_inputs_back_or_says_they_are_gone(server: Server, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    user = Client(server.url, verbose=False)
    cut = tmp_path / "teapot.png"
    product((90, 60, 30)).save(cut)
    made = user.predict(
        prompts="on a shelf",
        seed=4,
        width=64,
        height=64,
        steps=2,
        kind="product",
        images=[handle_file(str(cut))],
        api_name="/generate",
    )[2]
    [image] = made
    assert image["input"] == "teapot"
    job_id = Path(image["file"]).parent.name.split("-")[-1]
    form = user.predict(job_id, api_name="/history_reuse")
    assert form["kind"] == "product" and [name for _, name in form["reused"]] == ["teapot"]
    reused = user.predict(handle_file(image["file"]), api_name="/reuse_png")
    assert reused[10] == "product"  # kind, after the ten fields before it
    for stored in (server.output_dir.parent / "state" / "inputs").rglob("*.png"):
        stored.unlink()  # as retention would, once no kept job used it
    again = user.predict(handle_file(image["file"]), api_name="/reuse_png")
    assert again[10] == "text" and again[0] == "on a shelf"  # the settings, without the image


def test_the_page_and_rest_answer_one_job_shape(server: Server) -> None:
    from gradio_client import Client

    status, job = post(server, "api/v1/jobs", {"prompts": ["a cup"], "images_per_prompt": 2, **SMALL})
    assert status == 202 and job["status"] in ("queued", "running")
    rest = finished(server, job["id"])
    page = Client(server.url, verbose=False).predict(job["id"], api_name="/job")
    assert page.keys() == rest.keys() and page["progress"].keys() == rest["progress"].keys()
    assert [i.keys() for i in page["images"]] == [i.keys() for i in rest["images"]] and len(
        rest["images"]
    ) == 2
    same = ("id", "status", "kind", "folder", "progress")
    assert {k: page[k] for k in same} == {k: rest[k] for k in same}
    for link in (page["images"][0]["url"], rest["images"][0]["url"]):  # each opens the PNG
        absolute = link if link.startswith("http") else server.url.rstrip("/") + link
        assert Image.open(io.BytesIO(get(absolute))).size == (64, 64)


def test_the_docs_input_images_example_runs_as_written(server: Server, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.helpers import readme_code_blocks

    [example] = [b for b in readme_code_blocks("python") if '"kind": "product"' in b]
    env = {**os.environ, "WEBUI_URL": server.url.rstrip("/"), "WEBUI_KEY": "unused without a login"}
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ", 2) for line in done.stdout.splitlines()]
    assert len(lines) == 8 and {line[0] for line in lines} == {"red", "blue"}  # "red bottle", "blue jar"


def test_every_bad_input_is_refused_on_the_page_and_by_edits_with_the_same_words(
    server: Server, tmp_path: Path
) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    user = Client(server.url, verbose=False)
    client = OpenAI(base_url=server.url + "v1", api_key="unused")
    before = len(get(server.url + "api/v1/jobs"))
    checked = 0
    for changes, words in refusals():
        images = changes.get("images", [])
        if any("mask" in i or i["data"] == "@@@" for i in images) or changes.get("kind") == "text":
            continue  # the page has no mask upload (it paints), sends files; "prompts only" ignores images
        files = []
        for n, image in enumerate(images):
            path = tmp_path / f"input-{checked}-{n}.png"
            path.write_bytes(base64.b64decode(image["data"]))
            files.append(handle_file(str(path)))
        form = {"kind": "product", **{k: v for k, v in changes.items() if k != "images"}}
        with pytest.raises(AppError, match=re.escape(words)):
            user.predict(
                prompts="a scene",
                images=files,
                images_per_prompt=1,
                seed=1,
                guidance_scale=0,
                **SMALL,
                **form,
                api_name="/submit",
            )
        if len(files) == 1 and form == {"kind": "product"}:  # one image, nothing else changed: edits too
            with (
                open(files[0]["path"], "rb") as image,
                pytest.raises(BadRequestError, match=re.escape(words)),
            ):
                client.images.edit(image=image, prompt="a scene", size="64x64")
        checked += 1
    assert checked >= 10
    assert len(get(server.url + "api/v1/jobs")) == before


def test_scripts_may_send_reused_inputs_only_as_stored_hashes_with_safe_names(server: Server) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    image = {"data": b64(png(product((9, 9, 9))))}
    status, job = post(
        server, "api/v1/jobs", {"prompts": ["x"], "kind": "variation", "images": [image], **SMALL}
    )
    assert status == 202 and finished(server, job["id"])["status"] == "done"
    user = Client(server.url, verbose=False)
    form = user.predict(job["id"], api_name="/history_reuse")
    [[stored, _]] = form["reused"]
    common = dict(prompts="y", images_per_prompt=1, seed=1, guidance_scale=0, kind="variation", **SMALL)
    for crafted in ([1, 2], [None], "abc", [[stored, "n", "extra"]], [["../../etc/passwd", "x"]]):
        with pytest.raises(AppError, match="not a list of \\[hash, name\\] pairs"):
            user.predict(**common, reused=crafted, api_name="/submit")
    with pytest.raises(AppError, match="is not stored on this server"):
        user.predict(**common, reused=[["0" * 64, "x"]], api_name="/submit")
    made = user.predict(**common, reused=[[stored, "N\x1b[31m\u202e" + "x" * 10_000]], api_name="/submit")
    done = finished(server, made["id"])
    assert (
        done["status"] == "done" and done["images"][0]["input"] == "N[31m" + "x" * 55
    )  # printable, 60 at most


def test_rest_numbers_are_strict_and_base64_may_be_wrapped(server: Server) -> None:
    status, answer = post(server, "api/v1/jobs", {"prompts": ["x"], "strength": True, **SMALL})
    assert status == 422 and "strength" in answer["error"]["message"]
    data = b64(png(product((1, 90, 1))))
    wrapped = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))  # as `base64` writes it
    status, job = post(
        server, "api/v1/jobs", {"prompts": ["x"], "kind": "product", "images": [{"data": wrapped}], **SMALL}
    )
    assert status == 202, job
