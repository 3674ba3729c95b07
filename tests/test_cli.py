"""`python -m webui.batch` end to end, in a subprocess, on the demo model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from webui.outputs import read_png_parameters

PROJECT = Path(__file__).resolve().parents[1]


def run_batch(args: list[str], cache_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZIMAGE_CACHE_DIR": str(cache_dir), "ZIMAGE_MIN_SIZE": "32"}
    return subprocess.run(
        [sys.executable, "-m", "webui.batch", *args],
        cwd=PROJECT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_prompts_file_becomes_pngs_with_seeds_printed(tmp_path: Path, cache_dir: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red sneaker, front view\n# skipped\n\na {navy|olive} mug\n", "utf-8")  # a template
    out = tmp_path / "renders"
    done = run_batch(
        [
            "--prompts-file",
            str(prompts),
            "--out",
            str(out),
            "--images-per-prompt",
            "2",
            "--seed",
            "40",
            "--width",
            "48",
            "--height",
            "32",
            "--steps",
            "3",
        ],
        cache_dir,
    )

    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(int(seed), prompt) for seed, _, prompt in rows] == [
        (40, "a red sneaker, front view"),
        (41, "a red sneaker, front view"),
        (42, "a navy mug"),
        (43, "a navy mug"),
        (44, "a olive mug"),
        (45, "a olive mug"),
    ]
    for seed, path, prompt in rows:
        assert Path(path).parent == out
        params = read_png_parameters(Path(path))
        assert (params["seed"], params["prompt"], params["steps"]) == (int(seed), prompt, 3)
        with Image.open(path) as image:
            assert image.size == (48, 32)
    assert "demo model" in done.stderr and "seeds 40..45" in done.stderr
    assert "18/18" in done.stderr  # the progress bar reached its end: 6 images x 3 steps


def test_bad_input_exits_2_with_the_limit(tmp_path: Path, cache_dir: Path) -> None:
    done = run_batch(
        ["--prompts-file", "-", "--out", str(tmp_path), "--width", "1000"], cache_dir, stdin="a red sneaker\n"
    )
    assert done.returncode == 2
    assert "error: Width must be a multiple of 16 (got 1000; try 992 or 1008)." in done.stderr
    assert list(tmp_path.iterdir()) == []

    empty = run_batch(["--prompts-file", "-", "--out", str(tmp_path)], cache_dir, stdin="# nothing\n")
    assert empty.returncode == 2 and "error: No prompts" in empty.stderr

    broken = run_batch(
        ["--prompts-file", "-", "--out", str(tmp_path)], cache_dir, stdin="ok\na {red|navy mug\n"
    )
    assert broken.returncode == 2 and "error: Line 2: '{' at column 3 is never closed" in broken.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_exits_2_naming_it(tmp_path: Path, cache_dir: Path) -> None:
    done = run_batch(
        ["--prompts-file", "-", "--out", str(tmp_path), "--dtype", "fp16"], cache_dir, stdin="a\n"
    )
    assert done.returncode == 2 and "ZIMAGE_DTYPE / --dtype=fp16 is refused" in done.stderr


def test_products_from_a_folder_in_every_scene_of_the_file(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "products"
    folder.mkdir()
    for name, colour in (("mug", (200, 20, 20)), ("vase", (20, 20, 200))):
        cut = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
        cut.paste(Image.new("RGBA", (16, 24), (*colour, 255)), (12, 8))
        cut.save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image: skipped in a folder")
    scenes = tmp_path / "scenes.txt"
    scenes.write_text("on a beach\non snow\n", "utf-8")
    out, state = tmp_path / "renders", tmp_path / "state"
    common = ["--prompts-file", str(scenes), "--out", str(out), "--state-dir", str(state), "--seed", "7"]
    small = ["--width", "32", "--height", "32", "--steps", "2", "--kind", "product"]
    done = run_batch([*common, *small, "--images", str(folder), "--position", "bottom"], cache_dir)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [prompt for _, _, prompt in rows] == [
        "mug: on a beach",
        "mug: on snow",
        "vase: on a beach",
        "vase: on snow",
    ]
    assert Path(rows[0][1]).name.startswith("001_mug-on-a-beach_s7")
    parameters = read_png_parameters(Path(rows[3][1]))
    assert (parameters["kind"], parameters["position"], parameters["input_name"]) == (
        "product",
        "bottom",
        "vase",
    )
    assert len(list((state / "inputs").rglob("*.png"))) == 2  # stored by hash, as the server does
    refused = run_batch([*common, *small, "--images", str(scenes)], cache_dir)  # a text file named itself
    assert refused.returncode == 2 and "is not an image that can be read" in refused.stderr
    text_only = run_batch([*common, "--width", "32", "--height", "32", "--images", str(folder)], cache_dir)
    assert text_only.returncode == 2 and "Text-to-image jobs take no input images" in text_only.stderr
