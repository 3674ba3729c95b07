"""The real server (`python -m webui`, queue on) driven over HTTP with gradio_client."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.client import Job
from gradio_client.exceptions import AppError
from PIL import Image, ImageChops

from tests.helpers import (
    Server,
    generate,
    get_json,
    held,
    readme_code_blocks,
    running_server,
    server_with_faults,
    slowed,
    wait_for,
)
from webui.keys import Keys
from webui.outputs import read_manifest, read_png_parameters
from webui.users import Users

# A long request for the demo model: 80 images of 256x256, several seconds on two cores.
LONG = dict(
    prompts="\n".join(f"product {n}" for n in range(20)),
    images_per_prompt=4,
    seed=1,
    width=256,
    height=256,
    steps=8,
    guidance_scale=0.0,
)

# The rest of a Generate event's values, as raw JSON: kind, strength, product size, position,
# model (the server's), the images section (files, cut-out, painted photo, reused images) and
# four LoRA rows (name, strength), none of them used.
IMAGES_OFF = b', "text", 0.6, 0.6, "center", "", null, "auto", null, null' + b', "", 1.0' * 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    # One request at a time into the engine, so that the queue in front of it is what we test.
    # Faults' hooks hold or slow a call that a test must see running, however fast the machine.
    work = tmp_path_factory.mktemp("server")
    options = {"queue_size": "1", "cross_batching": "false"}
    with server_with_faults(work, cache_dir, work / "faults", **options) as server:
        yield server


def faults(server: Server) -> Path:
    assert server.faults is not None
    return server.faults


def client(server: Server) -> Client:
    return Client(server.url, verbose=False)


def pngs(folder: Path) -> list[Path]:
    """The generated images under `folder` (a request's contact sheet is a PNG too, not one of them)."""
    return (
        sorted(p for p in folder.rglob("*.png") if p.name != "contact-sheet.png") if folder.exists() else []
    )


def stop(server: Server, user: Client) -> None:
    """Press Stop as the page does: through the queue, in the user's session (Stop's group has
    no limit, so it runs however busy the queue is)."""
    assert user.predict(api_name="/stop") == ()  # Stop has no outputs


def stop_until_done(server: Server, user: Client, job: Job) -> None:
    """Stop reaches a request once it runs; a queued one needs asking again."""
    deadline = time.monotonic() + 60
    while not job.done():
        assert time.monotonic() < deadline, "request did not stop"
        stop(server, user)
        time.sleep(0.2)


def test_three_prompts_with_two_variants_give_six_images_in_order(server: Server) -> None:
    gallery, summary, images, archive, sheet = generate(
        client(server),
        prompts="a red sneaker\n# a comment\n\na navy mug\nan olive bag",
        images_per_prompt=2,
        seed=5,
        width=64,
        height=48,
        steps=3,
    )
    expected = [
        ("a red sneaker", 5),
        ("a red sneaker", 6),
        ("a navy mug", 7),
        ("a navy mug", 8),
        ("an olive bag", 9),
        ("an olive bag", 10),
    ]
    assert [item["caption"] for item in gallery] == [f"{p} (seed {s})" for p, s in expected]
    assert [(i["prompt"], i["seed"], i["width"], i["height"], i["steps"]) for i in images] == [
        (p, s, 64, 48, 3) for p, s in expected
    ]
    assert re.fullmatch(
        r"6 images in [\d.]+ s, [\d.]+ images/s, seeds 5\.\.10 \(demo model\) \(job [0-9a-f]{12}\)", summary
    )
    for item, info in zip(gallery, images, strict=True):
        with Image.open(item["image"]) as shown:
            assert shown.format == "PNG" and shown.size == (64, 48)
        assert read_png_parameters(Path(info["file"]))["seed"] == info["seed"]  # the file on disk
    with zipfile.ZipFile(archive) as bundle:
        assert bundle.namelist() == [Path(i["file"]).name for i in images]
    with Image.open(sheet) as contact:  # three rows of two 256x192 thumbnails (64x48 scaled up)
        pad, line = 12, 20
        assert contact.size == (pad + 2 * (256 + pad), pad + 3 * (line + 256 + line + pad))


def test_the_gallery_serves_the_saved_pngs_themselves(server: Server) -> None:
    # Encoded once: the page fetches the very file the engine wrote, not a re-encoded or
    # cached copy; a one-image request downloads that PNG rather than a zip of it.
    raw = Client(server.url, verbose=False, download_files=False)
    gallery, _, images, download, _ = raw.predict(
        prompts="a teal kettle",
        images_per_prompt=1,
        seed=3,
        width=64,
        height=64,
        steps=2,
        api_name="/generate",
    )
    [shown], [info] = gallery, images
    assert shown["image"]["path"] == info["file"] == download["path"]
    with urllib.request.urlopen(shown["image"]["url"], timeout=10) as response:
        assert response.read() == Path(info["file"]).read_bytes()


NORMAL = dict(
    prompts="a red sneaker", images_per_prompt=1, seed=1, width=64, height=64, steps=2, guidance_scale=0.0
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompts": "x" * 100_000}, "Prompt 1 is 100,000 characters long; the limit is 16,384 characters"),
        ({"prompts": "\n".join(f"shoe {n}" for n in range(500))}, "Too many prompts: 500 (the limit is 100"),
        (
            {"prompts": "shoe {0|1|2|3|4|5|6|7|8|9} {0|1|2|3|4|5|6|7|8|9} {a|b}"},
            "Too many prompts: 200, from 1 line with templates (the limit is 100",
        ),
        ({"prompts": "a {red|navy sneaker"}, "Line 1: '{' at column 3 is never closed"),
        ({"images_per_prompt": 10_000}, "Images per prompt must be a whole number from 1 to 200 (got 10000)"),
        (
            {"prompts": "\n".join(f"shoe {n}" for n in range(100)), "images_per_prompt": 16},
            "Too many images: 100 prompts x 16 = 1600 (the limit is 200",
        ),
        ({"width": 1000}, "Width must be a multiple of 16 (got 1000; try 992 or 1008)"),
        ({"width": 8192}, "Width must be a whole number from 32 to 2048 (got 8192)"),
        ({"height": 0}, "Height must be a whole number from 32 to 2048 (got 0)"),
        ({"height": -64}, "Height must be a whole number from 32 to 2048 (got -64)"),
        ({"steps": 500}, "Steps must be a whole number from 1 to 50 (got 500)"),
        ({"seed": 2**70}, "Seed must be -1 (random) or a whole number from 0"),
        ({"prompts": "a red\x07sneaker"}, "Prompt 1 contains a control character or non-text byte (U+0007"),
        ({"prompts": "a red \ufffd\ufffd sneaker"}, "Prompt 1 contains a control character or non-text byte"),
        (
            {"prompts": "shoe\n" * 400_000},
            "The prompt box holds 2,000,000 characters; the limit is 1,638,500",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_before_any_work_and_the_next_request_runs(
    server: Server, changes: dict, message: str
) -> None:
    before = pngs(server.output_dir)
    with pytest.raises(Exception, match=re.escape(message)):
        client(server).predict(**{**NORMAL, **changes}, api_name="/generate")
    assert pngs(server.output_dir) == before  # nothing made
    gallery, *_ = client(server).predict(**NORMAL, api_name="/generate")
    assert len(gallery) == 1


def test_the_readme_client_example_runs_as_written(server: Server) -> None:
    [example] = [b for b in readme_code_blocks("python") if 'api_name="/generate"' in b]
    assert "http://127.0.0.1:7860/" in example
    assert "width=1024,\n    height=1024," in example
    namespace: dict = {}
    # As written, only with smaller images, so that the demo model is quick.
    exec(example.replace("http://127.0.0.1:7860/", server.url).replace("=1024,", "=256,"), namespace)
    assert "4 images in" in namespace["summary"]
    assert [i["seed"] for i in namespace["images"]] == [42, 43, 44, 45]


def test_the_readme_job_by_id_example_runs_as_written(server: Server) -> None:
    [example] = [b for b in readme_code_blocks("python") if 'api_name="/submit"' in b]
    namespace: dict = {}
    exec(example.replace("http://127.0.0.1:7860/", server.url).replace("=1024,", "=64,"), namespace)
    status = namespace["status"]
    assert status["status"] == "done" and [i["seed"] for i in status["images"]] == [7, 8, 9, 10]
    assert all(Path(i["file"]).is_file() for i in status["images"])


def test_healthz_answers_while_a_batch_runs(server: Server) -> None:
    idle = get_json(server.url + "healthz")
    assert idle | {"last_progress": None, "calls": None} == {
        "status": "ok",
        "mode": "embedded",
        "model": "demo model",
        "device": "cpu",
        "demo": True,
        "busy": False,
        "call_running": False,
        "paused": None,
        "queue_length": 0,
        "jobs_queued": 0,
        "jobs_running": 0,
        "last_progress": None,
        "call_quiet_s": 0.0,
        "calls": None,
    }
    assert set(idle["calls"]) == {"count", "images", "busy_s", "idle_gap"}
    user = client(server)
    try:
        with slowed(faults(server), 0.05):  # 160 steps: 8 s or more, progress moving all along
            job = user.submit(**LONG, api_name="/generate")
            wait_for(lambda: get_json(server.url + "healthz")["busy"], 30, "the batch to start")
            seen = set()
            for _ in range(10):
                started = time.monotonic()
                health = get_json(server.url + "healthz", timeout=2)
                assert time.monotonic() - started < 2  # not stuck behind the running batch
                seen.add(health["last_progress"])
                time.sleep(0.1)
            assert health["busy"] and len(seen) > 1  # progress keeps moving
    finally:
        stop_until_done(server, user, job)


def test_stop_keeps_the_images_already_finished(server: Server) -> None:
    before = set(pngs(server.output_dir))
    user = client(server)
    with held(faults(server), 8):  # the first call (4 images) is saved, the second waits
        job = user.submit(**LONG, api_name="/generate")
        wait_for(lambda: len(set(pngs(server.output_dir)) - before) >= 4, 60, "four finished images")
        user.predict(api_name="/stop")
    gallery, summary, images, _archive, _ = job.result(timeout=60)

    kept = len(gallery)
    assert 4 <= kept < 80
    assert summary.startswith(f"Stopped: {kept} of 80 images kept")
    assert [i["seed"] for i in images] == list(range(1, kept + 1))
    new = set(pngs(server.output_dir)) - before
    assert sorted(str(p) for p in new) == sorted(i["file"] for i in images)
    for path in new:
        with Image.open(path) as image:
            image.load()  # complete files only
    assert not [p for p in server.output_dir.rglob("*") if p.name.endswith(".tmp")]
    again = generate(user, prompts="a")
    assert len(again[0]) == 1


def test_a_full_queue_gets_a_clear_busy_error_naming_the_limit(server: Server) -> None:
    running_user, waiting_user = client(server), client(server)
    jobs = []
    try:
        with held(faults(server), 1):  # the first job runs until the checks are done
            jobs.append((running_user, running_user.submit(**LONG, api_name="/generate")))
            wait_for(lambda: get_json(server.url + "healthz")["busy"], 30, "the first job to run")
            jobs.append((waiting_user, waiting_user.submit(**LONG, api_name="/generate")))
            wait_for(lambda: get_json(server.url + "healthz")["jobs_queued"] == 1, 30, "the second to queue")
            full = r"The queue is full: 1 jobs are waiting.*\(ZIMAGE_QUEUE_SIZE=1\)"
            with pytest.raises(AppError, match=full):
                generate(client(server), prompts="a")
    finally:
        for user, job in jobs:
            stop_until_done(server, user, job)


def test_bad_input_comes_back_as_a_clear_error(server: Server) -> None:
    user = client(server)
    with pytest.raises(Exception, match=r"Width must be a multiple of 16 \(got 1000"):
        generate(user, prompts="a", seed=-1, width=1000, height=64, steps=8)
    with pytest.raises(Exception, match=r"No prompts"):
        generate(user, prompts="# only a comment", seed=-1, width=64, height=64, steps=8)


def test_direct_api_calls_cannot_skip_the_queue(server: Server) -> None:
    body = b'{"data": ["a", 1, 1, 32, 32, 1, 0, ""]}'
    for route in ("run", "api", "call"):
        request = urllib.request.Request(
            server.url + f"gradio_api/{route}/generate",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404, route


def test_with_auth_set_only_logged_in_clients_generate_and_the_shared_login_is_an_admin(
    tmp_path: Path, cache_dir: Path
) -> None:
    state = tmp_path / "state"  # beside the outputs: the server's state folder
    Users(state).add("erin", "erin's long password")
    keys = {name: Keys(state).add(name) for name in ("erin", "team")}
    with running_server(tmp_path, cache_dir, auth_user="team", auth_password="s3cret pass") as server:
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(server.url + "config", timeout=10)
        assert anonymous.value.code == 401
        with pytest.raises(Exception, match="Could not login"):
            Client(server.url, auth=("team", "wrong"), verbose=False)
        user = Client(server.url, auth=("team", "s3cret pass"), verbose=False)
        gallery, _, images, _, _ = generate(user, prompts="a red sneaker")
        assert len(gallery) == 1
        assert read_manifest(Path(images[0]["file"]).parent)["user"] == "team"  # who asked, in the history
        assert get_json(server.url + "healthz")["status"] == "ok"  # monitoring needs no login

        # The shared login is an admin: it may stop a person's job, which another may not.
        def api(method: str, path: str, who: str, body: dict | None = None) -> int | str:
            request = urllib.request.Request(
                server.url + path,
                data=None if body is None else json.dumps(body).encode(),
                method=method,
                headers={"Authorization": f"Bearer {keys[who]}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status if method != "POST" else json.load(answer)["id"]
            except urllib.error.HTTPError as refused:
                return refused.code

        long = {"prompts": "erin's mug", "images_per_prompt": 8, "width": 1024, "height": 1024}
        erins = api("POST", "api/v1/jobs", "erin", long)
        teams = api("POST", "api/v1/jobs", "team", long)
        assert api("DELETE", f"api/v1/jobs/{teams}", "erin") == 403  # erin: not hers, not an admin
        assert api("DELETE", f"api/v1/jobs/{erins}", "team") == 200
        assert api("DELETE", f"api/v1/jobs/{teams}", "team") == 200


def test_two_users_requests_share_pipeline_calls(shared_server: Server) -> None:
    server = shared_server  # default settings: cross-batching on, calls of up to 4 images
    long_user, short_user = client(server), client(server)
    with slowed(faults(server), 0.05):  # the 80 images take 8 s or more: the short one comes first
        long_job = long_user.submit(**LONG, api_name="/generate")
        wait_for(lambda: get_json(server.url + "healthz")["busy"], 30, "the long request to run")
        short = generate(short_user, prompts="a short one", seed=7, width=256, height=256, steps=8)
        assert not long_job.done()  # the short request did not wait for the 80 images
    assert [i["seed"] for i in short[2]] == [7]
    stop_until_done(server, long_user, long_job)
    shared = re.findall(r"call of 4 images \((\w+) x\d, (\w+) x\d\)", server.log_text())
    assert shared, "no pipeline call held images of both requests"


def test_pages_waiting_on_jobs_hold_no_worker_thread(shared_server: Server, tmp_path: Path) -> None:
    """More pages waiting on their jobs than the server has worker threads (16): every other
    event of the page still answers."""
    server = shared_server
    long_user, users = client(server), [client(server) for _ in range(18)]  # pages open
    with held(faults(server), 8):  # the long job's second call waits until the checks are done
        long_job = long_user.submit(**LONG, api_name="/generate")
        wait_for(lambda: get_json(server.url + "healthz")["busy"], 30, "the long job to run")
        waiting = [
            (
                user,
                user.submit(
                    **{**LONG, "prompts": f"waiting {n}", "images_per_prompt": 1, "width": 128},
                    api_name="/generate",
                ),
            )
            for n, user in enumerate(users)
        ]
        wait_for(lambda: get_json(server.url + "healthz")["jobs_queued"] >= 10, 60, "the jobs to queue")
        listing = tmp_path / "prompts.txt"
        listing.write_text("a red sneaker\na navy mug\n")
        checker = client(server)
        loaded = checker.predict(handle_file(str(listing)), api_name="/load_prompts")
        assert loaded == "a red sneaker\na navy mug\n"
        assert checker.predict(api_name="/history")[0][1] in ("running", "queued")
        assert sum(not job.done() for _, job in waiting) == 18  # they were all still waiting meanwhile
    stop_until_done(server, long_user, long_job)
    for _, job in waiting:
        assert len(job.result(timeout=120)[0]) == 1


def join_queue(server: Server, data: bytes) -> dict:
    """/generate over plain HTTP as the page sends it: POST queue/join with a raw JSON body
    (`data` is the JSON list of inputs), then read the event stream to the completion message."""
    [generate] = [
        d for d in get_json(server.url + "config")["dependencies"] if d.get("api_name") == "generate"
    ]
    session = uuid.uuid4().hex
    body = b'{"data": %s, "fn_index": %d, "trigger_id": null, "session_hash": "%s", "event_data": null}' % (
        data,
        generate["id"],
        session.encode(),
    )
    request = urllib.request.Request(
        server.url + "gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as refused:
        return {"refused": refused.code, "detail": refused.read().decode()}
    with urllib.request.urlopen(
        server.url + f"gradio_api/queue/data?session_hash={session}", timeout=60
    ) as events:
        for line in events:
            if line.startswith(b"data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return message
    raise AssertionError("the event stream ended without a completion")


def test_bad_input_over_plain_http_gets_a_clear_error_and_the_next_request_runs(server: Server) -> None:
    before = pngs(server.output_dir)
    # NaN, which gradio_client cannot even send; Python's JSON reader takes it.
    nan = join_queue(
        server, b'["a red sneaker", 1, 1, 32, 32, 1, NaN, "", "", "per-image"' + IMAGES_OFF + b"]"
    )
    assert (
        not nan["success"] and nan["output"]["error"] == "Guidance scale must be between 0 and 20 (got nan)."
    )
    bell = join_queue(
        server, b'["a red \\u0007 sneaker", 1, 1, 32, 32, 1, 0, "", "", "per-image"' + IMAGES_OFF + b"]"
    )
    assert (
        not bell["success"]
        and "contains a control character or non-text byte (U+0007" in bell["output"]["error"]
    )
    raw_bytes = join_queue(
        server, b'["a red \xff\xfe sneaker", 1, 1, 32, 32, 1, 0, "", "", "per-image"' + IMAGES_OFF + b"]"
    )  # not UTF-8
    assert raw_bytes["refused"] == 400 and "error parsing the body" in raw_bytes["detail"]
    assert pngs(server.output_dir) == before

    normal = join_queue(
        server, b'["a red sneaker", 1, 1, 32, 32, 1, 0, "", "", "per-image"' + IMAGES_OFF + b"]"
    )
    assert normal["success"] and len(normal["output"]["data"][0]) == 1


def test_a_template_a_style_and_the_same_seeds_for_every_prompt(server: Server) -> None:
    gallery, summary, images, _, sheet = generate(
        client(server),
        prompts="a {red|navy} mug",
        images_per_prompt=2,
        seed=5,
        style="studio lighting",
        seed_policy="per-variant",
    )
    assert [(i["prompt"], i["seed"]) for i in images] == [
        ("a red mug", 5),
        ("a red mug", 6),
        ("a navy mug", 5),
        ("a navy mug", 6),
    ]
    assert [item["caption"] for item in gallery] == [
        "a red mug (seed 5)",
        "a red mug (seed 6)",
        "a navy mug (seed 5)",
        "a navy mug (seed 6)",
    ]
    parameters = read_png_parameters(Path(images[3]["file"]))
    assert (parameters["prompt"], parameters["style"], parameters["seed_policy"]) == (
        "a navy mug",
        "studio lighting",
        "per-variant",
    )
    assert "4 images in" in summary and "seeds 5..6" in summary
    assert Path(sheet).name == "contact-sheet.png" and Path(sheet).stat().st_size > 0


def test_prompts_come_from_an_uploaded_txt_or_csv_with_the_same_limits(
    server: Server, tmp_path: Path
) -> None:
    user = client(server)
    sheet = tmp_path / "shots.csv"
    sheet.write_text('sku,prompt\n1,"a red sneaker, front view"\n2,a {navy|olive} mug\n', "utf-8")
    box = user.predict(handle_file(str(sheet)), api_name="/load_prompts")
    assert box == "a red sneaker, front view\na {navy|olive} mug"
    images = generate(user, prompts=box)[2]
    assert [i["prompt"] for i in images] == ["a red sneaker, front view", "a navy mug", "a olive mug"]

    wrong = tmp_path / "shots.json"
    wrong.write_text('["a red sneaker"]')
    # Gradio refuses other types on the server (our own check, unit-tested, is behind it).
    with pytest.raises(AppError, match=r"Invalid file type\. .* one of these formats: \['\.txt', '\.csv'\]"):
        user.predict(handle_file(str(wrong)), api_name="/load_prompts")
    big = tmp_path / "big.txt"
    big.write_text("a red sneaker\n" * 80_000)  # 1.1 MB: under the server's upload cap, over ours
    with pytest.raises(AppError, match="The prompt file is 1,120,000 bytes; the limit is 1,000,000"):
        user.predict(handle_file(str(big)), api_name="/load_prompts")
    too_many = tmp_path / "many.txt"
    too_many.write_text("\n".join(f"shoe {n}" for n in range(150)))  # loads; generating is refused
    with pytest.raises(AppError, match=r"Too many prompts: 150 \(the limit is 100"):
        generate(user, prompts=user.predict(handle_file(str(too_many)), api_name="/load_prompts"))


def test_dropping_one_of_our_pngs_fills_the_form_and_remakes_the_same_image(
    server: Server, tmp_path: Path
) -> None:
    user = client(server)
    made = generate(
        user,
        prompts="a red sneaker\na navy mug",
        images_per_prompt=2,
        seed=11,
        width=64,
        height=48,
        steps=2,
        style="studio lighting",
        seed_policy="per-variant",
    )[2]
    original = Path(made[3]["file"])  # the navy mug, variant 1: seed 12
    form = user.predict(handle_file(str(original)), api_name="/reuse_png")
    expected = ["a navy mug", 1, 12, 64, 48, 2, 0.0, "", "studio lighting", "per-image"]
    # Then the model, the preset, the reused images (a State: not sent), the uploads and painted
    # photo cleared, and the LoRA rows (none: cleared).
    rows = ["", 1.0] * 4
    assert list(form) == [*expected, "text", 0.6, 0.6, "center", "demo model", "Custom", None, None, *rows]

    prompts, per, seed, width, height, steps, guidance, negative, style, policy, *_ = form
    again = generate(
        user,
        prompts=prompts,
        images_per_prompt=per,
        seed=seed,
        seed_policy=policy,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=guidance,
        negative_prompt=negative,
        style=style,
    )[2]
    with Image.open(original) as first, Image.open(again[0]["file"]) as second:
        # The same image (within the rounding of a batch of 4 against a call of 1): the settings
        # round-tripped.
        assert max(high for _, high in ImageChops.difference(first, second).getextrema()) <= 2

    stranger = tmp_path / "stranger.png"
    Image.new("RGB", (8, 8)).save(stranger)
    with pytest.raises(AppError, match="carries no Z-Image WebUI parameters"):
        user.predict(handle_file(str(stranger)), api_name="/reuse_png")


def test_without_a_login_the_api_is_as_open_as_the_page_and_run_history_is_off(server: Server) -> None:
    body = json.dumps({"prompts": "an open mug", "width": 64, "height": 64, "steps": 2}).encode()
    request = urllib.request.Request(
        server.url + "api/v1/jobs", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        job = json.load(response)
        assert response.status == 202 and job["owner"] is None
    wait_for(lambda: get_json(f"{server.url}api/v1/jobs/{job['id']}")["status"] == "done", 60, "the job")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(server.url + "gradio_api/runs", timeout=30)
