"""Shared fixtures: the demo model is built once per test session, offline, on the CPU in
float32. Also the suite's rules:

- Every test runs in a clean environment: `ZIMAGE_*` variables of the shell are dropped (a
  stray one would reach every test server), and the demo model is pinned to the CPU in
  float32 (on a CUDA machine `auto` would pick bf16 on the GPU), unless a test says otherwise.
- Tests marked `gpu` need a CUDA GPU; elsewhere they are skipped with that reason.
- With `CI` set, any other skip fails the run: in CI every tool a test needs is installed
  (./launch.sh test does it), so a skip means a missing install step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may reach the network: the hub client must answer from its cache or fail.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from tests.helpers import Server, server_with_faults
from webui.engine import Engine
from webui.loading import LoadedModel, load_model
from webui.settings import Settings

for _name in [n for n in os.environ if n.startswith("ZIMAGE_")]:
    del os.environ[_name]
os.environ.update(ZIMAGE_DEVICE="cpu", ZIMAGE_DTYPE="fp32")  # servers, workers and CLIs alike

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    """The real server with default settings, started once for the tests that need no other.

    Each server start costs 10-15 s of imports on two cores. A test that changes what it
    shares (the output folder, say) puts it back. It runs with tests/faults.py's hooks (nothing
    armed, nothing changes), so that a test can hold or slow a call it must see running.
    """
    work = tmp_path_factory.mktemp("shared")
    with server_with_faults(work, cache_dir, work / "faults") as server:
        yield server


@pytest.fixture(scope="session")
def demo_model(cache_dir: Path) -> LoadedModel:
    return load_model(Settings(model="demo", device="cpu", dtype="fp32", cache_dir=cache_dir).validate())


@pytest.fixture
def settings(tmp_path: Path, cache_dir: Path) -> Settings:
    """Small limits that keep the demo model fast on two CPU cores."""
    return Settings(
        model="demo",
        device="cpu",
        dtype="fp32",
        cache_dir=cache_dir,
        output_dir=tmp_path / "outputs",
        min_size=32,
    ).validate()


@pytest.fixture
def make_engine(demo_model: LoadedModel, settings: Settings):
    def make(**overrides) -> Engine:
        return Engine(demo_model, dataclasses.replace(settings, **overrides).validate())

    return make


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()


GPU = torch.cuda.is_available()
NO_GPU = "needs a CUDA GPU (tests marked gpu; ./launch.sh test -m gpu runs only those)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not GPU:
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(pytest.mark.skip(reason=NO_GPU))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI a skip is a failure, naming its reason (the missing tool), unless it is a GPU test
    on a machine without one."""
    report = yield
    if os.environ.get("CI") and report.skipped and not item.get_closest_marker("gpu"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI must run every test, but this one was skipped: {reason}"
    return report
