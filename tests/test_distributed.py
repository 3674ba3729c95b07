"""Distributed mode with real processes: Redis (with a password), two GPU workers (the demo
model on the CPU, with the faults of tests/faults.py) and the web host, met over HTTP.

The tests share one cluster and run in file order; each leaves it as it found it (workers up,
faults disarmed, Redis running).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from gradio_client import Client
from PIL import Image

from tests.cluster import REDIS, WHY_NO_REDIS, RedisServer, Worker, spawn_worker, start_redis
from tests.helpers import Server, get_json, held, make, running_server, spawn_server, wait_for, wait_until_up
from tests.test_loras import make_lora, unload
from tests.test_queue_control import scrape
from webui.distributed import broker
from webui.distributed.tasks import Turns
from webui.inputs import InputStore, prepare_input
from webui.loading import LoadedModel
from webui.outputs import read_png_parameters
from webui.request import GenerationRequest
from webui.settings import Settings

pytestmark = pytest.mark.skipif(REDIS is None, reason=WHY_NO_REDIS)

TASK_TIMEOUT_S = 6  # ZIMAGE_TASK_TIMEOUT: a killed worker's task runs again about this much later
SMALL = dict(images_per_prompt=1, seed=5, width=32, height=32, steps=2, guidance_scale=0.0)
DEMO_QUEUE = broker.queue_for(broker.model_key("demo model", "fp32"))


@dataclass
class Cluster:
    workdir: Path
    cache_dir: Path
    faults: Path
    redis: RedisServer
    workers: dict[str, Worker]
    web: Server

    def spawn(self, name: str, **settings: str) -> Worker:
        self.workers[name] = spawn_worker(
            name,
            self.redis.url,
            self.workdir,
            self.cache_dir,
            module="tests.faults worker",
            task_timeout=str(TASK_TIMEOUT_S),
            env={"WEBUI_FAULTS": str(self.faults)},
            max_batch_size="4",
            **settings,
        )
        return self.workers[name]

    def respawn_dead(self) -> int:
        """Supervisor's part: a fresh process for each worker that exited; how many there were."""
        dead = [name for name, worker in self.workers.items() if worker.process.poll() is not None]
        for name in dead:
            self.spawn(name)
        return len(dead)

    def health(self) -> dict[str, Any]:
        return get_json(self.web.url + "healthz")

    def online(self) -> dict[str, dict]:
        return {w["name"].split("@")[0]: w for w in self.health()["workers"]}

    def wait_online(self, names: set[str]) -> None:
        """Until each named worker's current process says it is ready (not a dead one's last word)."""

        def ready() -> bool:
            online = self.online()
            return all(online.get(n, {}).get("pid") == self.workers[n].process.pid for n in names)

        wait_for(ready, 120, f"workers {names} online")

    def arm(self, name: str, content: str) -> None:
        partial = self.faults / f".{name}.partial"
        partial.write_text(content)
        partial.rename(self.faults / name)

    def client(self) -> Client:
        return Client(self.web.url, verbose=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Cluster]:
    workdir, faults = tmp_path_factory.mktemp("cluster"), tmp_path_factory.mktemp("cluster-faults")
    store = start_redis(workdir / "redis")
    try:
        web = spawn_server(
            workdir,
            cache_dir,
            broker_url=store.url,
            model="demo",
            task_timeout=str(TASK_TIMEOUT_S),
            max_batch_size="4",
        )
        c = Cluster(workdir, cache_dir, faults, store, {}, web)
        for name in ("w1", "w2"):
            c.spawn(name)
        try:
            wait_until_up(web)
            c.wait_online({"w1", "w2"})
            yield c
        finally:  # the web host of now: a test may have started another
            c.web.process.terminate()
            for worker in c.workers.values():
                worker.stop()
            c.web.process.wait(30)
    finally:
        store.stop()


@pytest.fixture(autouse=True)
def disarmed(cluster: Cluster) -> Iterator[None]:
    yield
    for armed in cluster.faults.iterdir():
        armed.unlink()


def wait_job(user: Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ended() -> bool:
        found.update(user.predict(job_id, api_name="/job"))
        return found["status"] in ("done", "stopped", "failed")

    wait_for(ended, timeout, f"job {job_id} to end")
    return found


def pngs(status: dict[str, Any]) -> list[Path]:
    """The job's image files on disk (not its contact sheet)."""
    return sorted(Path(status["folder"]).glob("[0-9]*.png"))


def same_pixels(local: Any, files: list[Path]) -> None:
    """The workers' PNGs are the images made in this process: same names, pixels within 2/255."""
    assert [m.path.name for m in local.images] == [f.name for f in files]
    for mine, theirs in zip(local.images, files, strict=True):
        with Image.open(theirs) as image:
            difference = np.abs(
                np.asarray(image.convert("RGB"), dtype=int) - np.asarray(mine.image, dtype=int)
            ).max()
        assert difference <= 2, f"{theirs.name}: pixels differ by {difference}/255"


def submit(user: Client, **request: Any) -> str:
    return user.predict(**{**SMALL, **request}, api_name="/submit")["id"]


def page_says(url: str, text: str) -> None:
    """A person's view: in a real browser, a prompt generated on the page shows `text`."""
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.locator("#prompts textarea").fill("a green lamp")
            page.locator("#generate").click()
            expect(page.locator("#gallery")).to_contain_text(text, timeout=30_000)
        finally:
            browser.close()


def send_foreign_task(cluster: Cluster, serializer: str) -> str:
    """A task for another model, sent straight to this model's queue; its job id."""
    job_id, task_id = uuid.uuid4().hex[:12], uuid.uuid4().hex
    payload = {"v": 1, "job": job_id, "task": task_id, "model": "another model (bf16)", "request": {}}
    app = broker.celery_app(cluster.redis.url, TASK_TIMEOUT_S)
    app.send_task(
        broker.TASK_NAME,
        args=[payload | {"images": []}],
        queue=DEMO_QUEUE,
        task_id=task_id,
        serializer=serializer,
    )
    return job_id


def test_a_job_spreads_over_both_workers_with_the_pixels_of_batch_mode(cluster: Cluster, make_engine) -> None:
    before = {name: w["images"] for name, w in cluster.online().items()}
    user = cluster.client()
    request = dict(prompts="a red sneaker\na blue kettle", images_per_prompt=6, seed=11, width=48, height=48)
    status = wait_job(user, submit(user, **request))
    assert status["status"] == "done" and status["progress"]["images_done"] == 12, status
    files = pngs(status)
    assert len(files) == 12 and (Path(status["folder"]) / "contact-sheet.png").is_file()

    def counted() -> bool:  # heartbeats come every 2 s
        now = cluster.online()
        return sum(now[n]["images"] - before[n] for n in before) >= 12

    wait_for(counted, 10, "the workers' image counts")
    made = {name: w["images"] - before[name] for name, w in cluster.online().items()}
    assert all(count > 0 for count in made.values()), f"a worker was left idle: {made}"

    # The same job in batch mode, in this process: the same pixels (within 2/255), the same metadata.
    local = make(
        make_engine(max_batch_size=4),
        GenerationRequest(
            ["a red sneaker", "a blue kettle"], images_per_prompt=6, seed=11, width=48, height=48, steps=2
        ),
    )
    assert [m.path.name for m in local.images] == [f.name for f in files]
    for mine, theirs in zip(local.images, files, strict=True):
        with Image.open(theirs) as image:
            image.load()
            assert json.loads(image.text["zimage-webui"])["seed"] == mine.seed
            difference = np.abs(np.asarray(image, dtype=int) - np.asarray(mine.image, dtype=int)).max()
        assert difference <= 2, f"{theirs.name}: pixels differ by {difference}/255"


def test_a_product_job_over_both_workers_equals_the_embedded_pixels(
    cluster: Cluster, make_engine, tmp_path: Path
) -> None:
    """Inputs reach the workers through Redis by hash (no shared folder): the workers' state
    folders are their own, and the pixels equal those made in this process."""
    shots = []
    for colour in ((200, 30, 30), (30, 30, 200)):
        cut = Image.new("RGBA", (40, 60), (0, 0, 0, 0))
        cut.paste(Image.new("RGBA", (20, 36), (*colour, 255)), (10, 12))
        buffer = io.BytesIO()
        cut.save(buffer, "PNG")
        shots.append(buffer.getvalue())
    body = {
        "prompts": ["on a beach", "on snow"],
        "images_per_prompt": 2,
        "seed": 21,
        "kind": "product",
        "images": [
            {"data": base64.b64encode(data).decode(), "name": f"p{n}"} for n, data in enumerate(shots)
        ],
        "width": 48,
        "height": 48,
        "steps": 2,
    }
    request = urllib.request.Request(
        cluster.web.url + "api/v1/jobs",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    before = {name: w["images"] for name, w in cluster.online().items()}
    with urllib.request.urlopen(request, timeout=60) as answer:
        job_id = json.loads(answer.read())["id"]
    status = wait_job(cluster.client(), job_id)
    assert status["status"] == "done" and status["progress"]["images_done"] == 8, status
    wait_for(lambda: sum(w["images"] - before[n] for n, w in cluster.online().items()) >= 8, 10, "heartbeats")
    assert all(w["images"] > before[n] for n, w in cluster.online().items()), "a worker was left idle"
    for name in ("w1", "w2"):  # each fetched the two inputs once, by hash, into its own folder
        kept = sorted(p.stem for p in (cluster.workdir / f"{name}-state" / "inputs").rglob("*.png"))
        assert len(kept) == 2, (name, kept)
    store = InputStore(tmp_path / "inputs")
    digests = [store.put(prepare_input("product", data, "p", Settings())) for data in shots]
    local = make(
        make_engine(max_batch_size=4),
        GenerationRequest(
            ["on a beach", "on snow"],
            images_per_prompt=2,
            seed=21,
            width=48,
            height=48,
            steps=2,
            kind="product",
            inputs=digests,
            input_names=["p0", "p1"],
        ),
        inputs=store,
    )
    same_pixels(local, pngs(status))


def test_a_lora_job_over_both_workers_equals_embedded_each_worker_fetching_the_file(
    cluster: Cluster, make_engine, settings: Settings, demo_model: LoadedModel
) -> None:
    """The LoRA is in the web host's folder only: each worker gets it by hash through Redis,
    keeps it, says it has it, and makes the pixels this process makes with it."""
    path = make_lora(demo_model, cluster.workdir / "loras", "brand-look", 7)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not any(sha in w["loras"] for w in cluster.online().values())
    shape = {**SMALL, "images_per_prompt": 4, "seed": 3}
    body = {"prompts": ["a mug", "a cup"], "loras": [{"name": "brand-look", "strength": 0.7}], **shape}
    request = urllib.request.Request(
        cluster.web.url + "api/v1/jobs", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        job_id = json.loads(answer.read())["id"]
    status = wait_job(cluster.client(), job_id)
    assert status["status"] == "done" and status["progress"]["images_done"] == 8, status
    # Each worker that ran a task of it (its log says so; Redis may give both tasks to one)
    # fetched the file, kept it, and says so in its heartbeat.
    ran = [name for name in ("w1", "w2") if f"job {job_id} task" in cluster.workers[name].log_text()]
    assert ran, "no worker logged a task of the job"
    wait_for(lambda: all(sha in cluster.online()[n]["loras"] for n in ran), 10, "heartbeats naming it")
    for name in ran:
        kept = cluster.workdir / f"{name}-state" / "loras" / f"{sha}.safetensors"
        assert kept.read_bytes() == path.read_bytes()
    settings.lora_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, settings.lora_path / path.name)
    engine = make_engine(max_batch_size=4)
    try:
        local = make(engine, GenerationRequest(["a mug", "a cup"], loras=[("brand-look", 0.7, "")], **shape))
    finally:
        unload(engine)
    same_pixels(local, pngs(status))


def test_jobs_naming_the_second_model_go_only_to_its_worker_and_the_form_takes_its_defaults(
    cluster: Cluster,
) -> None:
    """A worker of the demo's base variant joins: the models list and the page's menu offer it,
    its jobs run there alone with base's defaults, and other names are refused."""
    base = cluster.spawn("w3", model="demo-base")
    try:
        cluster.wait_online({"w3"})
        metrics = scrape(cluster.web.url + "metrics")  # the web host's monitor sees every worker
        assert metrics["zimage_workers_online{}"] == 3 and "zimage_workers_busy{}" in metrics
        models = get_json(cluster.web.url + "api/v1/models")
        assert [
            (m["name"], m["default"], m["steps"], m["guidance_scale"], m["negative_prompt"]) for m in models
        ] == [
            ("demo model", True, 8, 0.0, False),
            ("demo model (base)", False, 28, 4.0, True),
        ]
        before = {name: w["images"] for name, w in cluster.online().items()}
        body = {"prompts": ["a vase"], "images_per_prompt": 3, "seed": 4, "width": 32, "height": 32}
        job_id = _post_job(cluster, {**body, "model": "demo model (base)"})
        status = wait_job(cluster.client(), job_id)
        assert status["status"] == "done", status
        for made in pngs(status):  # base's steps and guidance: the body named neither
            parameters = read_png_parameters(made)
            assert (parameters["model"], parameters["steps"], parameters["guidance_scale"]) == (
                "demo model (base)",
                28,
                4.0,
            )
        # At least 3: on loaded cores w3's first (cold) call may outlast the cluster's 6 s task
        # timeout, and Redis then hands the task over again; only w3 may take it.
        wait_for(lambda: cluster.online()["w3"]["images"] >= 3, 10, "w3's heartbeat")
        assert all(cluster.online()[n]["images"] == before[n] for n in ("w1", "w2"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post_job(cluster, {**body, "model": "nope"})
        assert refused.value.code == 400
        assert "Model 'nope' is not served here. Models you can name: demo model, demo model (base)." in (
            refused.value.read().decode()
        )
        _switch_models_on_the_page(cluster.web.url)
    finally:
        base.stop()
        del cluster.workers["w3"]


def _post_job(cluster: Cluster, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        cluster.web.url + "api/v1/jobs", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["id"]


def _switch_models_on_the_page(url: str) -> None:
    """In Chromium: choosing base sets its steps and guidance and shows the negative prompt;
    choosing Turbo again puts them back and hides it."""
    from playwright.sync_api import expect

    from tests.helpers import ARTIFACTS, chromium

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(url)
        expect(page.locator("#model")).to_be_visible(timeout=60_000)
        page.locator("#advanced").get_by_text("Advanced").click()
        expect(page.locator("#steps input[type=number]")).to_have_value("8")
        expect(page.locator("#negative")).to_be_hidden()
        page.locator("#model input").click()
        page.get_by_role("option", name="demo model (base)").click()
        expect(page.locator("#steps input[type=number]")).to_have_value("28")
        expect(page.locator("#guidance input[type=number]")).to_have_value("4")
        expect(page.locator("#negative")).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-models-base.png"), full_page=True)
        page.locator("#model input").click()
        page.get_by_role("option", name="demo model", exact=True).click()
        expect(page.locator("#steps input[type=number]")).to_have_value("8")
        expect(page.locator("#guidance input[type=number]")).to_have_value("0")
        expect(page.locator("#negative")).to_be_hidden()


def test_workers_with_other_settings_get_no_tasks_and_refuse_a_mismatched_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    before = {name: w["images"] for name, w in cluster.online().items()}
    # A web host asking for bf16: no worker online serves it; its job waits, and says why.
    with running_server(
        tmp_path,
        cluster.cache_dir,
        broker_url=cluster.redis.url,
        model="demo",
        dtype="bf16",
        task_timeout="6",
    ) as web:
        health = get_json(web.url + "healthz")
        assert health["status"] == "ok"
        assert health["notice"] == (
            "No GPU worker is online for demo model (bf16) (workers online serve demo model (fp32)); "
            "jobs wait until one starts."
        )
        user = Client(web.url, verbose=False)
        job_id = submit(user, prompts="a cup")
        time.sleep(4)
        status = user.predict(job_id, api_name="/job")
        assert status["status"] in ("queued", "running") and status["progress"]["images_done"] == 0
        assert "No GPU worker is online for demo model (bf16)" in status["notice"]
        page_says(web.url, "No GPU worker is online for demo model (bf16)")
        # The HTTP API says so at once: 503, with the same words.
        body = json.dumps({"prompts": "a cup", "width": 64, "height": 64}).encode()
        api = urllib.request.Request(
            web.url + "api/v1/jobs", data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api, timeout=30)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"]
        assert "No GPU worker is online for demo model (bf16)" in json.load(refused.value)["error"]["message"]
        # So does the OpenAI route, in OpenAI's error shape, instead of waiting forever.
        body = json.dumps({"prompt": "a cup", "size": "64x64"}).encode()
        openai = urllib.request.Request(
            web.url + "v1/images/generations", data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(openai, timeout=30)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"]
        error = json.load(refused.value)["error"]
        assert error["type"] == "server_error" and "No GPU worker is online" in error["message"]

        # A bf16 worker comes, takes the task, and its pipeline call hangs: it exits 70 for
        # Supervisor to start a fresh one; the job does not fail (its task waits for the next).
        hang = tmp_path / "stuck-faults"
        hang.mkdir()
        (hang / "hang").write_text("")
        stuck = spawn_worker(
            "stuck",
            cluster.redis.url,
            tmp_path,
            cluster.cache_dir,
            module="tests.faults worker",
            env={"WEBUI_FAULTS": str(hang)},
            dtype="bf16",
            stall_timeout="2",
            task_timeout="6",
        )
        try:
            assert stuck.process.wait(120) == 70, stuck.log_text()
        finally:
            stuck.stop()
        assert "Exiting with status 70 so that Supervisor starts a fresh process" in stuck.log_text()
        assert user.predict(job_id, api_name="/job")["status"] in ("queued", "running")
    assert {name: w["images"] for name, w in cluster.online().items() if name in before} == before

    # A task for another model that reaches this model's queue anyway is refused with a message.
    job_id = send_foreign_task(cluster, "json")
    client = redis.Redis.from_url(cluster.redis.url)
    wait_for(lambda: client.llen(broker.events_key(job_id)) > 0, 20, "the worker's answer")
    event, _ = broker.unpack_event(client.lindex(broker.events_key(job_id), 0))
    assert event["kind"] == "failed" and "this task needs another model (bf16)" in event["message"]
    assert "serves demo model (fp32)" in event["message"]


def test_stop_drops_queued_tasks_and_stops_running_ones_keeping_finished_images(cluster: Cluster) -> None:
    cluster.arm("slow", "0.25")  # steps slow enough to be seen in progress
    user = cluster.client()
    # Each worker's first call of 4 steps, then its next call waits until the stop is sent; the
    # held calls then go on, and stop at their next step.
    with held(cluster.faults, 4):
        job_id = submit(user, prompts="a lamp", images_per_prompt=16, width=48, height=48, steps=4)
        seen: list[dict[str, Any]] = []

        def first_image() -> bool:
            seen.append(user.predict(job_id, api_name="/job"))
            return seen[-1]["progress"]["images_done"] >= 1

        wait_for(first_image, 60, "a first image")
        # Per-step progress from the workers (ahead of the images finished), and who runs the job.
        assert any(s["progress"]["fraction"] * 16 > s["progress"]["images_done"] for s in seen), [
            (s["progress"]["fraction"], s["progress"]["images_done"]) for s in seen
        ]
        assert {"w1", "w2"} & {name.split("@")[0] for s in seen for name in s["workers"].split(", ") if name}
        assert user.predict(job_id, api_name="/stop_job") is True
    status = wait_job(user, job_id, 30)
    assert status["status"] == "stopped"
    assert 1 <= status["progress"]["images_done"] < 16
    client = redis.Redis.from_url(cluster.redis.url)
    assert client.llen(DEMO_QUEUE) == 0  # no task of it left waiting
    wait_for(lambda: not any(w["busy"] for w in cluster.online().values()), 15, "the workers to stop")
    kept = pngs(status)
    assert len(kept) == status["progress"]["images_done"]
    time.sleep(1.5)
    assert pngs(status) == kept  # nothing arrives after the stop


def test_a_worker_killed_mid_task_has_its_task_run_by_another(cluster: Cluster) -> None:
    user = cluster.client()
    running: list[str] = []

    def started() -> bool:  # /job names the workers that started its tasks
        running[:] = [
            n.split("@")[0] for n in user.predict(job_id, api_name="/job")["workers"].split(", ") if n
        ]
        return bool(running)

    try:
        # Each worker's call waits after its first step until the block ends: the victim is killed
        # inside its task however slow the machine (a slowed step once let it finish first).
        with held(cluster.faults, 1):
            job_id = submit(user, prompts="a chair", images_per_prompt=16, width=48, height=48, steps=4)
            wait_for(started, 60, "a worker to start a task")
            victim = running[0]
            os.kill(cluster.workers[victim].process.pid, signal.SIGKILL)
            cluster.workers[victim].process.wait()
        status = wait_job(user, job_id, 120)
        assert status["status"] == "done" and status["progress"]["images_done"] == 16, status
        [survivor] = [w for name, w in cluster.workers.items() if name != victim]
        assert "(after 1 lost workers)" in survivor.log_text()  # it knew the task's worker died
        files = pngs(status)
        assert len(files) == 16 and not any("-2." in f.name for f in files)  # every image exactly once
        assert sorted(Path(i["file"]) for i in status["images"]) == files
    finally:  # the next tests need both workers, whatever happened here
        cluster.respawn_dead()
        cluster.wait_online({"w1", "w2"})


def test_a_web_restart_mid_job_loses_nothing(cluster: Cluster) -> None:
    cluster.arm("slow", "0.5")  # two calls of 4 images on each worker, 2 s each
    user = cluster.client()
    job_id = submit(user, prompts="a vase", images_per_prompt=16, width=48, height=48, steps=4)
    wait_for(
        lambda: user.predict(job_id, api_name="/job")["progress"]["images_done"] >= 1, 60, "a first image"
    )
    cluster.web.process.terminate()
    cluster.web.process.wait(30)
    cluster.web = spawn_server(
        cluster.workdir,
        cluster.cache_dir,
        broker_url=cluster.redis.url,
        model="demo",
        task_timeout=str(TASK_TIMEOUT_S),
        max_batch_size="4",
        log_name="server-2.log",
    )
    wait_until_up(cluster.web)
    user = cluster.client()
    status = wait_job(user, job_id, 120)
    assert status["status"] == "done" and len(pngs(status)) == 16
    assert job_id in [row[-1] for row in user.predict(api_name="/history")]
    assert "following" in cluster.web.log_text()  # it took up the tasks already out, not new ones


def test_redis_away_is_said_plainly_and_work_resumes_when_it_is_back(cluster: Cluster) -> None:
    cluster.redis.stop()
    try:

        def unreachable() -> bool:
            try:
                get_json(cluster.web.url + "healthz")
            except Exception as exc:  # urllib raises HTTPError for the 503
                body = json.loads(exc.read()) if hasattr(exc, "read") else {}
                return getattr(exc, "code", None) == 503 and body.get("status") == "broker unreachable"
            return False

        wait_for(unreachable, 20, "/healthz to report the broker")
        user = cluster.client()
        job_id = submit(user, prompts="a bowl", images_per_prompt=2)
        time.sleep(2)
        status = user.predict(job_id, api_name="/job")
        assert status["status"] in ("queued", "running")
        assert (
            f"The broker (redis://:***@127.0.0.1:{cluster.redis.port}/0) is unreachable" in status["notice"]
        )
        page_says(cluster.web.url, "is unreachable; jobs wait until it is back")
        assert cluster.web.process.poll() is None
        assert all(w.process.poll() is None for w in cluster.workers.values())
    finally:
        cluster.redis.start()
    status = wait_job(user, job_id, 120)
    assert status["status"] == "done" and len(pngs(status)) == 2
    assert cluster.health()["status"] == "ok"


def test_a_task_that_killed_three_workers_fails_its_job_and_others_go_on(cluster: Cluster) -> None:
    # Jobs of earlier tests ended first (the page's in page_says is not waited for): the fault
    # below would kill their calls too, and their deaths would be counted here.
    wait_for(lambda: cluster.health()["jobs_queued"] + cluster.health()["jobs_running"] == 0, 60, "no jobs")
    cluster.arm("crash", "64")  # a forward of 64-pixel-wide images kills its worker
    user = cluster.client()
    poison = submit(user, prompts="a poison pill", width=64, height=64)
    deaths = 0

    def ended_with_respawns() -> bool:
        nonlocal deaths
        deaths += cluster.respawn_dead()
        return user.predict(poison, api_name="/job")["status"] in ("failed", "done", "stopped")

    wait_for(ended_with_respawns, 180, "the poison job to fail")
    # The job may be failed before this loop has seen the last worker's exit: look once more.
    wait_for(lambda: ended_with_respawns() and deaths >= 3, 30, "a third worker's exit")
    status = user.predict(poison, api_name="/job")
    assert status["status"] == "failed" and deaths == 3, (status, deaths)
    assert "3 workers died while running this part of the job" in status["error"]
    other = wait_job(user, submit(user, prompts="an apple"), 120)
    assert other["status"] == "done"
    cluster.wait_online({"w1", "w2"})


def test_a_pickled_task_is_refused_unread(cluster: Cluster) -> None:
    job_id = send_foreign_task(cluster, "pickle")

    def refused() -> bool:
        return any(
            "Refusing to deserialize untrusted content of type pickle" in w.log_text()
            for w in cluster.workers.values()
        )

    wait_for(refused, 20, "a worker to refuse the pickle")
    assert redis.Redis.from_url(cluster.redis.url).llen(broker.events_key(job_id)) == 0  # never ran


def test_tasks_that_redis_lost_are_sent_again(cluster: Cluster) -> None:
    app = broker.celery_app(cluster.redis.url, TASK_TIMEOUT_S)
    names = [w["name"] for w in cluster.health()["workers"]]
    replies = app.control.cancel_consumer(DEMO_QUEUE, destination=names, reply=True, timeout=5)
    assert len(replies) == len(names) == 2, replies  # both stopped taking tasks
    client = redis.Redis.from_url(cluster.redis.url)
    user = cluster.client()
    try:
        job_id = submit(user, prompts="a lost glove", images_per_prompt=2)
        wait_for(lambda: client.llen(DEMO_QUEUE) > 0, 20, "its task in the queue")
        client.delete(DEMO_QUEUE)  # as a Redis restarted without its append-only file would
    finally:
        app.control.add_consumer(DEMO_QUEUE, destination=names, reply=True, timeout=5)
    status = wait_job(user, job_id, 4 * TASK_TIMEOUT_S + 30)
    assert status["status"] == "done" and len(pngs(status)) == 2
    assert "sending its missing images again" in cluster.web.log_text()


def test_a_task_that_lost_a_worker_runs_alone_on_its_next_worker() -> None:
    """The worker's turns (webui/distributed/tasks.py), driven by threads as Celery's pool
    drives them: a suspect task waits for the running ones, and others wait for it."""
    turns, log, lock = Turns(), [], threading.Lock()
    release = {name: threading.Event() for name in ("a", "b", "suspect", "c")}

    def task(name: str, alone: bool) -> None:
        with turns.turn(alone):
            with lock:
                log.append(f"{name} in")
            release[name].wait(10)
            with lock:
                log.append(f"{name} out")

    def start(name: str, alone: bool = False) -> threading.Thread:
        thread = threading.Thread(target=task, args=(name, alone))
        thread.start()
        return thread

    threads = [start("a"), start("b")]
    wait_for(lambda: log == ["a in", "b in"], 5, "two ordinary tasks sharing the lane")
    threads.append(start("suspect", alone=True))
    time.sleep(0.2)
    threads.append(start("c"))  # arrives while the suspect waits: it waits behind it
    time.sleep(0.2)
    assert log == ["a in", "b in"]
    release["a"].set()
    release["b"].set()
    wait_for(lambda: log[-1] == "suspect in", 5, "the suspect to start, alone")
    time.sleep(0.2)
    assert "c in" not in log
    release["suspect"].set()
    wait_for(lambda: log[-1] == "c in", 5, "the next task after the suspect")
    release["c"].set()
    for thread in threads:
        thread.join(5)
    assert log.index("suspect in") > max(log.index("a out"), log.index("b out"))
    assert log.index("c in") > log.index("suspect out")
