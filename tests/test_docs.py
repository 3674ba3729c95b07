"""The examples of the README and docs/ run as written, and their links lead somewhere."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.helpers import DOCS, PROJECT, readme_code_blocks


def test_the_batch_example_and_the_metadata_snippet_work(tmp_path: Path, cache_dir: Path) -> None:
    [command] = [b for b in readme_code_blocks("bash") if "webui.batch" in b and "--images " not in b]
    (tmp_path / "assets").symlink_to(PROJECT / "assets")
    done = run_batch_example(command, tmp_path, cache_dir)
    assert len(done.stdout.splitlines()) == 12  # six example prompts, two variants each

    [snippet] = [b for b in readme_code_blocks("python") if "read_png_parameters" in b]
    *setup, expression = snippet.strip().splitlines()
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec("\n".join(setup), namespace)
        parameters = eval(expression, namespace)
    finally:
        os.chdir(cwd)
    assert parameters["seed"] == 42 and parameters["prompt"].startswith("a red leather sneaker")


def test_every_relative_link_in_the_readme_and_docs_points_to_a_file() -> None:
    broken = []
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if (
                not target.startswith(("http://", "https://", "mailto:"))
                and not (page.parent / target).exists()
            ):
                broken.append(f"{page.relative_to(PROJECT)} -> {target}")
    assert broken == []
    assert len((PROJECT / "README.md").read_text("utf-8").splitlines()) <= 200  # a guide, not the manual


def test_the_product_batch_example_works(tmp_path: Path, cache_dir: Path) -> None:
    from PIL import Image

    [command] = [b for b in readme_code_blocks("bash") if "webui.batch" in b and "--images " in b]
    (tmp_path / "scenes.txt").write_text("on a sunlit beach\non a marble counter\n", "utf-8")
    (tmp_path / "products").mkdir()
    for name in ("bottle", "jar"):
        cut = Image.new("RGBA", (60, 90), (0, 0, 0, 0))
        cut.paste(Image.new("RGBA", (30, 60), "crimson"), (15, 15))
        cut.save(tmp_path / "products" / f"{name}.png")
    done = run_batch_example(command, tmp_path, cache_dir)
    labels = [line.split("\t")[2] for line in done.stdout.splitlines()]
    assert labels == [
        f"{p}: {s}"
        for p in ("bottle", "jar")
        for s in ("on a sunlit beach", "on a marble counter")
        for _ in range(4)
    ]


def run_batch_example(command: str, cwd: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    """A batch command of the docs as written, only with smaller images so that the demo model
    is quick; it must succeed."""
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == ".venv/bin/python"
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "HF_HUB_OFFLINE": "1",
        "ZIMAGE_CACHE_DIR": str(cache_dir),
    }
    done = subprocess.run(
        [sys.executable, *argv[1:], "--width", "256", "--height", "256"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done
