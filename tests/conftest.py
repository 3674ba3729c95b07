"""Shared fixtures: the demo model is built once per test session, offline."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may reach the network: the hub client must answer from its cache or fail.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import Server, running_server
from webui.engine import Engine
from webui.loading import LoadedModel, load_model
from webui.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    """The real server with default settings, started once for the tests that need no other.

    Each server start costs 10-15 s of imports on two cores. A test that changes what it
    shares (the output folder, say) puts it back.
    """
    with running_server(tmp_path_factory.mktemp("shared"), cache_dir) as server:
        yield server


@pytest.fixture(scope="session")
def demo_model(cache_dir: Path) -> LoadedModel:
    return load_model(Settings(model="demo", cache_dir=cache_dir).validate())


@pytest.fixture
def settings(tmp_path: Path, cache_dir: Path) -> Settings:
    """Small limits that keep the demo model fast on two CPU cores."""
    return Settings(
        model="demo", cache_dir=cache_dir, output_dir=tmp_path / "outputs", min_size=32
    ).validate()


@pytest.fixture
def make_engine(demo_model: LoadedModel, settings: Settings):
    def make(**overrides) -> Engine:
        return Engine(demo_model, dataclasses.replace(settings, **overrides).validate())

    return make


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()
