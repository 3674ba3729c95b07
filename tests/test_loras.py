"""LoRAs on the real demo pipeline: a LoRA made in the test with PEFT over the demo
transformer and saved with diffusers' saver, put in the library folder; it changes the
pixels, strength 0 and "none" equal the plain model, and nothing leaks between jobs."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import ZImagePipeline, ZImageTransformer2DModel
from openai import BadRequestError, OpenAI
from peft import LoraConfig, get_peft_model_state_dict
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.helpers import Server, make, readme_code_blocks, running_server, wait_for
from tests.test_api_images import png
from tests.test_lane import hold_first_call, queue_behind
from webui.engine import Engine, ImageTask, RequestError
from webui.loading import LoadedModel
from webui.loras import LoraLibrary
from webui.outputs import PARAMETERS_KEY, read_png_parameters
from webui.request import GenerationRequest

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 5}


def make_lora(model: LoadedModel, folder: Path, name: str, seed: int) -> Path:
    """A LoRA for the demo transformer: PEFT adapters on its attention, random weights."""
    transformer = copy.deepcopy(model.pipe.transformer)  # PEFT's layers never touch the shared model
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"]), "made")
    state = get_peft_model_state_dict(transformer, adapter_name="made")
    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    ZImagePipeline.save_lora_weights(folder, transformer_lora_layers=state, weight_name=f"{name}.safetensors")
    return folder / f"{name}.safetensors"


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].image, np.int16)


@pytest.fixture
def lora_engine(make_engine, demo_model: LoadedModel, settings):
    make_lora(demo_model, settings.lora_path, "brand-look", 1)
    engine = make_engine(max_batch_size=4)
    yield engine
    unload(engine)


def unload(engine: Engine) -> None:
    """No adapter left on the shared demo model, active or loaded, nor PEFT's layers, for later
    tests."""
    engine.lane.calls.adapters.use(())
    for adapter in list(engine.lane.calls.adapters._loaded):
        engine.model.pipe.delete_adapters(adapter)
    engine.model.pipe.unload_lora_weights()


def test_a_lora_changes_the_pixels_and_none_or_strength_0_equal_the_plain_model(lora_engine) -> None:
    engine = lora_engine
    plain = pixels(make(engine, GenerationRequest(["a mug"], **SMALL)))
    looked = make(engine, GenerationRequest(["a mug"], loras=[("brand-look", 1.0, "")], **SMALL))
    assert np.abs(pixels(looked) - plain).mean() > 1
    name, strength, digest = looked.record.request.loras[0]
    assert (name, strength, digest) == (
        "brand-look",
        1.0,
        LoraLibrary(engine.settings.lora_path).get(name).sha256,
    )
    assert read_png_parameters(looked.images[0].path)["loras"] == [["brand-look", 1.0, digest]]
    zero = make(engine, GenerationRequest(["a mug"], loras=[("brand-look", 0.0, "")], **SMALL))
    assert np.abs(pixels(zero) - plain).max() <= 1
    after = make(engine, GenerationRequest(["a mug"], **SMALL))  # right after a LoRA job: no leak
    assert np.abs(pixels(after) - plain).max() <= 1


def test_a_kohya_style_file_is_read_as_its_diffusers_twin(lora_engine, settings) -> None:
    """The same weights under Kohya's key names (lora_unet_..., lora_down/lora_up, alpha), as
    many trainers write them: accepted at submit and the same pixels as the diffusers file."""
    engine, folder = lora_engine, settings.lora_path
    state = load_file(folder / "brand-look.safetensors")
    kohya = {}
    for key, tensor in state.items():
        layer, _, part = key.removeprefix("transformer.").partition(".lora_")
        stem = "lora_unet_" + layer.replace(".", "_")
        kohya[f"{stem}.lora_{'down' if part.startswith('A') else 'up'}.weight"] = tensor
        if part.startswith("A"):
            kohya[f"{stem}.alpha"] = torch.tensor(float(tensor.shape[0]))  # alpha = rank: scale 1
    save_file(kohya, folder / "kohya-look.safetensors")
    ours = make(engine, GenerationRequest(["a mug"], loras=[("brand-look", 1.0, "")], **SMALL))
    theirs = make(engine, GenerationRequest(["a mug"], loras=[("kohya-look", 1.0, "")], **SMALL))
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


def test_jobs_with_and_without_a_lora_together_each_equal_their_run_alone(lora_engine) -> None:
    engine = lora_engine
    with_lora = GenerationRequest(["a vase"], loras=[("brand-look", 0.8, "")], **SMALL)
    without = GenerationRequest(["a vase"], **SMALL)
    alone = [pixels(make(engine, r)) for r in (with_lora, without)]
    first, gate = hold_first_call(engine, GenerationRequest(["hold"], **SMALL))
    together = queue_behind(engine, with_lora, without, with_lora, without)
    gate.set()
    first.join()
    results = [r.join() for r in together]
    for result, expected in zip(results, alone * 2, strict=True):
        assert np.abs(pixels(result) - expected).max() <= 1
    sets = {r.record.id: r.record.request.loras for r in results}
    for call in engine.stats.log:  # images of different LoRA sets never share a call
        assert len({sets.get(job, ()) for job, _ in call.served}) == 1


def test_missing_unreadable_and_changed_lora_files_are_refused_by_name(lora_engine, settings) -> None:
    engine = lora_engine
    with pytest.raises(RequestError, match="No LoRA named 'nope' in the library"):
        make(engine, GenerationRequest(["x"], loras=[("nope", 1.0, "")], **SMALL))
    (settings.lora_path / "broken.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(RequestError, match="LoRA 'broken' is not a safetensors file"):
        make(engine, GenerationRequest(["x"], loras=[("broken", 1.0, "")], **SMALL))
    with pytest.raises(RequestError, match=re.escape("No LoRA named '../secret'")):
        make(engine, GenerationRequest(["x"], loras=[("../secret", 1.0, "")], **SMALL))
    with pytest.raises(RequestError, match="strength must be a number from -2 to 2"):
        engine.validate(GenerationRequest(["x"], loras=[("brand-look", 3.0, "")], **SMALL))
    with pytest.raises(RequestError, match="Too many LoRAs: 5"):
        engine.validate(GenerationRequest(["x"], loras=[("brand-look", 1.0, "")] * 5, **SMALL))
    accepted = GenerationRequest(["x"], loras=[("brand-look", 1.0, "0" * 64)], **SMALL)  # another version
    with pytest.raises(RequestError, match="changed or was replaced since the job was accepted"):
        engine.run(accepted, [ImageTask(0, "x", 5)], on_image=lambda task, image: None)


def _lora_for_a_wider_model(model: LoadedModel, folder: Path, name: str) -> None:
    """A LoRA for Z-Image's architecture at another width: its layers' names match, not their shapes."""
    config = {**dict(model.pipe.transformer.config), "dim": 64, "n_heads": 4, "n_kv_heads": 4}
    transformer = ZImageTransformer2DModel.from_config(config)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"]), "made")
    state = get_peft_model_state_dict(transformer, adapter_name="made")
    ZImagePipeline.save_lora_weights(folder, transformer_lora_layers=state, weight_name=f"{name}.safetensors")


def test_files_for_another_model_or_naming_nothing_are_refused_at_submit(lora_engine, settings) -> None:
    engine, folder = lora_engine, settings.lora_path
    _lora_for_a_wider_model(engine.model, folder, "wider")
    sdxl = {"transformer.down_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32)}
    save_file(sdxl, folder / "sdxl.safetensors")
    save_file({"weight": torch.zeros(4, 4)}, folder / "not-a-lora.safetensors")
    whole = (folder / "brand-look.safetensors").read_bytes()
    (folder / "cut-short.safetensors").write_bytes(whole[: len(whole) - 100])  # header intact, data not
    refused = {
        "wider": r"LoRA 'wider' does not fit this model \(\S+\.to_[qkv]: 4x64, the model needs 4x32\)",
        "sdxl": r"LoRA 'sdxl' does not fit this model \(no layer down_blocks\.0\.attn\.to_q\)",
        "not-a-lora": r"LoRA 'not-a-lora' does not fit this model \(none of its weights names a layer",
        "cut-short": r"LoRA 'cut-short' is not a safetensors file that can be read",
    }
    for name, words in refused.items():
        calls = engine.lane.stats.calls
        with pytest.raises(RequestError, match=words):
            make(engine, GenerationRequest(["x"], loras=[("brand-look", 1.0, ""), (name, 1.0, "")], **SMALL))
        assert engine.lane.stats.calls == calls  # refused before any work
    assert make(engine, GenerationRequest(["x"], loras=[("brand-look", 1.0, "")], **SMALL)).images


def test_the_library_is_listed_and_rest_jobs_take_loras_by_name(
    demo_model: LoadedModel, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A file put in a running server's folder is listed at once and used by name over REST."""
    work = tmp_path_factory.mktemp("lora-server")
    make_lora(demo_model, work / "loras", "brand-look", 2)
    (work / "loras" / "broken.safetensors").write_bytes(b"\x00" * 16)
    with running_server(work, cache_dir) as server:
        with urllib.request.urlopen(server.url + "api/v1/loras", timeout=30) as answer:
            listed = {entry["name"]: entry for entry in json.loads(answer.read())}
        assert listed["brand-look"]["size"] > 0 and len(listed["brand-look"]["sha256"]) == 64
        assert "not a safetensors file" in listed["broken"]["error"]
        body = {"prompts": ["a mug"], "loras": [{"name": "brand-look", "strength": 0.8}], **SMALL}
        request = urllib.request.Request(
            server.url + "api/v1/jobs", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            job_id = json.loads(answer.read())["id"]
        wait_for(lambda: _job(server, job_id)["status"] == "done", 60, "the LoRA job")
        [image] = _job(server, job_id)["images"]
        sha = listed["brand-look"]["sha256"]
        assert read_png_parameters(Path(image["file"]))["loras"] == [["brand-look", 0.8, sha]]
        bad = urllib.request.Request(
            server.url + "api/v1/jobs",
            json.dumps({**body, "loras": [{"name": "nope"}]}).encode(),
            {"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=60)
        assert refused.value.code == 400 and "No LoRA named 'nope'" in refused.value.read().decode()
        _lora_for_a_wider_model(demo_model, work / "loras", "wider")  # added while it runs
        bad.data = json.dumps({**body, "loras": [{"name": "wider"}]}).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=60)
        assert refused.value.code == 400
        assert "LoRA 'wider' does not fit this model" in refused.value.read().decode()
        # OpenAI's routes take the same extra field (edits: as JSON text in a form field).
        client = OpenAI(base_url=server.url + "v1", api_key="unused: no login on this server")
        chosen = [{"name": "brand-look", "strength": -0.5}]
        made = client.images.generate(prompt="a mug", size="64x64", extra_body={"steps": 2, "loras": chosen})
        cut = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
        cut.paste(Image.new("RGBA", (20, 20), (200, 30, 30, 255)), (22, 22))
        edited = client.images.edit(
            image=("cut.png", png(cut), "image/png"),
            prompt="on a desk",
            size="64x64",
            extra_body={"steps": 2, "loras": json.dumps(chosen)},
        )
        for result in (made, edited):
            picture = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
            assert json.loads(picture.info[PARAMETERS_KEY])["loras"] == [["brand-look", -0.5, sha]]
        with pytest.raises(BadRequestError, match="does not fit this model"):
            client.images.generate(prompt="x", size="64x64", extra_body={"loras": [{"name": "wider"}]})
        # The docs' example as written (no login here: the key is not checked).
        [example] = [b for b in readme_code_blocks("bash") if "/api/v1/loras" in b]
        env = {**os.environ, "WEBUI_URL": server.url.rstrip("/"), "WEBUI_KEY": "unused"}
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", example], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert '"name":"demo model"' in done.stdout and '"name":"brand-look"' in done.stdout
        assert '"url":"http' in done.stdout, done.stdout
        with pytest.raises(BadRequestError, match="loras must be a JSON list"):
            client.images.edit(image=("c.png", png(cut), "image/png"), prompt="x", extra_body={"loras": "[{"})


def _job(server: Server, job_id: str) -> dict:
    with urllib.request.urlopen(f"{server.url}api/v1/jobs/{job_id}", timeout=30) as answer:
        return json.loads(answer.read())
