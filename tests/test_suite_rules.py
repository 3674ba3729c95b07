"""The suite's own rules (tests/conftest.py, ./launch.sh test), each tried on a small run of
its own: in CI a skip fails; a `gpu` test is skipped with its reason where there is no GPU;
settings left in the shell never reach a test; a missing tool fails CI by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import PROJECT

SAMPLE = """
import os
import pytest


def test_skips_for_want_of_a_tool():
    pytest.skip("no redis-server here")


@pytest.mark.gpu
def test_on_a_gpu():
    pass


def test_sees_a_clean_environment():
    assert os.environ.get("ZIMAGE_SOMETHING") is None
    assert (os.environ["ZIMAGE_DEVICE"], os.environ["ZIMAGE_DTYPE"]) == ("cpu", "fp32")
"""


def run_sample(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The sample file under the suite's conftest and pytest settings, in a process of its own."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(SAMPLE)
    config = ["-c", str(PROJECT / "pyproject.toml"), "--rootdir", str(PROJECT), "-p", "tests.conftest"]
    command = [sys.executable, "-m", "pytest", *config, str(sample)]
    return subprocess.run(
        command, cwd=PROJECT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the sample's GPU test runs here")
def test_in_ci_a_skip_fails_naming_its_reason_but_a_gpu_test_is_only_skipped(tmp_path: Path) -> None:
    # Settings left in the shell, as CI's bar leaves one: the tests never see them.
    shell = {"ZIMAGE_SOMETHING": "1", "ZIMAGE_DEVICE": "cuda", "ZIMAGE_DTYPE": "bf16"}
    ci = run_sample(tmp_path, CI="true", **shell)
    assert ci.returncode == 1, ci.stdout
    assert "CI must run every test, but this one was skipped: Skipped: no redis-server here" in ci.stdout
    assert "1 failed, 1 passed, 1 skipped" in ci.stdout
    assert "needs a CUDA GPU" in ci.stdout  # the reason, in the summary
    here = run_sample(tmp_path, CI="", **shell)
    assert here.returncode == 0, here.stdout
    assert "1 passed, 2 skipped" in here.stdout and "no redis-server here" in here.stdout


def test_in_ci_launch_test_fails_naming_a_missing_tool(tmp_path: Path) -> None:
    """`./launch.sh test` on a machine without redis-server (and no apt-get to install it)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "dirname", "sha256sum", "cut", "cat", "id", "nproc", "chromium", "openssl"):
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    (tools / "python3").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(tools), "CI": "true"}
    done = subprocess.run(
        ["bash", "./launch.sh", "test"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CI must run every test, but these are missing: redis-server" in done.stderr
    assert "ruff" not in done.stdout + done.stderr  # it stopped before the tests
