"""The LoRA step of the full-size benchmark (webui/bench/__main__.py): what LoRAs cost the lane.

Two LoRA files are made here, in a temporary folder that the step's engine sees as its library:
PEFT adapters (rank 16) on the attention projections of the loaded transformer, random weights
in the model's dtype, saved with diffusers' saver, as tests/test_loras.py makes its own. So it
runs on `--model demo` and on `--model full-random` alike. Then, side by side in one run:
  1. the switch, through the engine's own `webui.lane.adapters.Adapters` (what the lane calls
     before every pipeline call): seconds of the first use of each file (diffusers'
     `load_lora_weights`; the first file also puts PEFT's layers into the transformer), then,
     repeated, milliseconds to make a loaded set active from none, to set it again, to switch
     to the other set and back, and to go back to none (medians);
  2. images/s for a queue of jobs alternating set A and set B, all in the lane at once (an
     opening one-step job holds the lane until they are), against the same jobs all with set A,
     in rounds (the first apart, the order alternating), timed from the start of the first call
     of the queue to the end of its last (the lane's stats). Also: the calls each queue took and
     how many times the set changed between calls (the lane puts jobs of one set in one call,
     but it does not reorder calls), and the ratio mixed/one.
Afterwards no adapter is active or loaded, and PEFT's layers are taken out of the transformer,
so the steps after this one time the plain model.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from diffusers import ZImagePipeline
from peft import LoraConfig, get_peft_model_state_dict

from webui.bench.steps import PROMPT, Bench, say
from webui.engine import Engine, ImageTask
from webui.lane.adapters import Adapters
from webui.loras import LoraLibrary
from webui.request import GenerationRequest

RANK = 16
SWITCHES = 10  # rounds of switches timed (each a few milliseconds at most)
JOBS = 4  # per queue: A, B, A, B when mixed, all A otherwise
LoraSet = tuple[tuple[str, float, str], ...]  # (name, strength, sha256) per LoRA


def measure_loras(bench: Bench, backend: str) -> dict[str, Any]:
    """The LoRA figures (see the module's docstring), on an engine whose library is a
    temporary folder of LoRAs made here."""
    say("LoRAs: first load, switching sets, and a queue mixing two sets against one")
    batch, size = max(bench.args.batches), bench.args.size
    pipe = bench.model.pipe
    with tempfile.TemporaryDirectory(prefix="zimage-bench-loras-") as tmp:
        folder = Path(tmp)
        files = [make_lora(pipe.transformer, folder, name, seed) for seed, name in enumerate("ab", 1)]
        library = LoraLibrary(folder)
        set_a: LoraSet = ((files[0], 0.8, library.get(files[0]).sha256),)
        set_b: LoraSet = ((files[1], 0.8, library.get(files[1]).sha256),)
        engine = bench.engine(backend, max_batch_size=batch, lora_dir=str(folder))
        adapters = engine.lane.calls.adapters
        assert adapters is not None  # an engine always has a library
        try:
            # The lane's thread starts with the first job: until then this thread may use them.
            result = {"rank": RANK, "file_mb": round(library.get(files[0]).size / 2**20, 2)}
            result.update(switching(adapters, set_a, set_b, bench.cuda))
            result.update(queues(bench, engine, set_a, set_b, batch))
        finally:
            engine.close()
            adapters.use(())
            pipe.delete_adapters(list(adapters._loaded))
            adapters._loaded.clear()
            pipe.unload_lora_weights()  # PEFT's layers out: later steps time the plain transformer
    return {"batch": batch, "size": size, "compiled": bench.compiled_, **result}


def make_lora(transformer: Any, folder: Path, name: str, seed: int) -> str:
    """A LoRA file for `transformer`: PEFT adapters on its attention, random weights; its name."""
    config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["to_q", "to_k", "to_v"])
    transformer.add_adapter(config, "bench-made")
    state = get_peft_model_state_dict(transformer, adapter_name="bench-made")
    transformer.delete_adapters("bench-made")
    transformer.unload_lora()  # PEFT's emptied layers out too: the first load puts them back in
    generator = torch.Generator().manual_seed(seed)
    dtype = transformer.dtype
    state = {k: (torch.randn(v.shape, generator=generator) * 0.3).to(dtype) for k, v in state.items()}
    weight_name = f"bench-{name}.safetensors"
    ZImagePipeline.save_lora_weights(folder, transformer_lora_layers=state, weight_name=weight_name)
    return weight_name.removesuffix(".safetensors")


def switching(adapters: Adapters, set_a: LoraSet, set_b: LoraSet, cuda: bool) -> dict[str, Any]:
    """Seconds of each file's first use, then the medians of the switches, in milliseconds."""

    def timed(loras: LoraSet) -> float:
        started = time.perf_counter()
        adapters.use(loras)
        if cuda:  # the weights are copied to the GPU asynchronously
            torch.cuda.synchronize()
        return time.perf_counter() - started

    first_a, first_b = timed(set_a), timed(set_b)
    adapters.use(())
    times: dict[str, list[float]] = {"from_none": [], "stay": [], "switch": [], "to_none": []}
    for _ in range(SWITCHES):
        times["from_none"].append(timed(set_a))
        times["stay"].append(timed(set_a))
        times["switch"] += [timed(set_b), timed(set_a)]
        times["to_none"].append(timed(()))
    result: dict[str, Any] = {"load_first_s": round(first_a, 4), "load_second_s": round(first_b, 4)}
    result.update({f"{name}_ms": round(1000 * statistics.median(t), 3) for name, t in times.items()})
    return result


def queues(bench: Bench, engine: Engine, set_a: LoraSet, set_b: LoraSet, batch: int) -> dict[str, Any]:
    """A queue mixing the sets against one with set A only, in rounds; the first round apart."""
    plans = {"mixed": [set_a, set_b] * (JOBS // 2), "one_set": [set_a] * JOBS}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
    for round_ in range(bench.args.repeats + 1):  # the first round warms the calls with adapters
        order = list(plans) if round_ % 2 == 0 else list(reversed(plans))
        for name in order:
            runs[name].append(queue(bench, engine, plans[name], f"loras-{round_}-{name}", batch))
    rows: dict[str, Any] = {}
    for name, measured in runs.items():
        timed = measured[1:]
        rows[name] = {
            "images_per_s": round(statistics.median(r["images_per_s"] for r in timed), 3),
            "calls": measured[-1]["calls"],
            "set_changes": measured[-1]["set_changes"],
        }
    pairs = zip(runs["mixed"], runs["one_set"], strict=True)
    ratios = [mixed["images_per_s"] / one["images_per_s"] for mixed, one in pairs]
    return {
        "jobs": JOBS,
        "images_per_job": batch,
        "queue": rows,
        "mixed_vs_one_set": round(statistics.median(ratios[1:]), 3),
        "ratios": [round(r, 3) for r in ratios[1:]],
    }


def queue(bench: Bench, engine: Engine, sets: Sequence[LoraSet], tag: str, batch: int) -> dict[str, Any]:
    """Jobs of `batch` images, one per set in `sets`, all waiting in the lane before the first
    of them is packed: images/s from the first call's start to the last call's end."""
    size = bench.args.size
    labels = [f"{tag}-{n}" for n in range(len(sets))]

    def hold() -> None:  # the opener's, on the lane's thread: until every job is in the lane
        deadline = time.monotonic() + 60
        while engine.lane.job_count < len(sets) + 1 and time.monotonic() < deadline:
            time.sleep(0.001)

    def submit(pool: ThreadPoolExecutor, run: Callable[[], Any], waiting: int) -> Future:
        future = pool.submit(run)
        deadline = time.monotonic() + 60
        while engine.lane.job_count < waiting and not future.done() and time.monotonic() < deadline:
            time.sleep(0.001)  # in the lane before the next: the order of arrival is the list's
        return future

    opener = GenerationRequest([f"{tag} opener"], seed=1, width=size, height=size, steps=1)
    with ThreadPoolExecutor(len(sets) + 1, thread_name_prefix="bench-loras") as pool:
        running = [submit(pool, lambda: run(engine, opener, [f"{tag} opener"], "opener", hold), 1)]
        for n, (label, loras) in enumerate(zip(labels, sets, strict=True)):
            texts = [PROMPT.format(n=bench.prompts + k) for k in range(batch)]
            bench.prompts += batch
            request = GenerationRequest(texts, seed=1, width=size, height=size, loras=loras)
            running.append(submit(pool, lambda r=request, t=texts, lb=label: run(engine, r, t, lb), n + 2))
        for future in running:
            future.result()
    calls = [c for c in engine.stats.log if any(job in labels for job, _ in c.served)]
    images = sum(count for call in calls for _, count in call.served)
    set_of = {label: loras for label, loras in zip(labels, sets, strict=True)}
    order = [set_of[call.served[0][0]] for call in calls]
    return {
        "images_per_s": images / (calls[-1].ended - calls[0].started),
        "calls": len(calls),
        "set_changes": sum(a != b for a, b in itertools.pairwise(order)),
    }


def run(
    engine: Engine,
    request: GenerationRequest,
    texts: list[str],
    label: str,
    on_start: Callable[[], None] | None = None,
) -> None:
    tasks = [ImageTask(n, text, 1 + n) for n, text in enumerate(texts)]
    engine.run(request, tasks, on_image=lambda task, image: None, label=label, on_start=on_start)
