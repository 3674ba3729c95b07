"""Settings: defaults, sources and their precedence, validation messages, the generated page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webui.settings import Settings, SettingsError, env_name, flag_name, setting_names
from webui.settings_doc import REGENERATE, settings_markdown

PROJECT = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_turbo_friendly() -> None:
    settings = Settings.from_sources([], {})
    assert settings == Settings()
    assert (settings.model, settings.device, settings.dtype) == ("auto", "auto", "auto")
    assert settings.max_prompt_tokens == 512 and settings.output_dir == Path("outputs")


def test_environment_is_read_and_flags_win() -> None:
    env = {
        "ZIMAGE_MAX_BATCH_SIZE": "8",
        "ZIMAGE_CPU_OFFLOAD": "yes",
        "ZIMAGE_MODEL": "/models/zi",
        "ZIMAGE_OUTPUT_DIR": "~/renders",
        "ZIMAGE_DEVICE": "cuda:1",
    }
    settings = Settings.from_sources(["--max-batch-size", "2", "--model", "demo"], env)
    assert settings.max_batch_size == 2 and settings.model == "demo"
    assert settings.cpu_offload is True and settings.device == "cuda:1"
    assert settings.output_dir == Path("~/renders").expanduser()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ZIMAGE_DTYPE": "fp16"},
            "ZIMAGE_DTYPE / --dtype=fp16 is refused: Z-Image-Turbo produces NaN/black",
        ),
        ({"ZIMAGE_DTYPE": "int8"}, "ZIMAGE_DTYPE / --dtype must be one of auto, bf16, fp32"),
        (
            {"ZIMAGE_MAX_PROMPTS": "many"},
            "ZIMAGE_MAX_PROMPTS / --max-prompts must be a whole number (got 'many')",
        ),
        ({"ZIMAGE_MAX_PROMPTS": "0"}, "ZIMAGE_MAX_PROMPTS / --max-prompts must be at least 1"),
        ({"ZIMAGE_COMPILE": "maybe"}, "ZIMAGE_COMPILE / --compile must be true or false"),
        ({"ZIMAGE_MAX_PROMPT_TOKENS": "600"}, "must be at most 512, the model's limit"),
        ({"ZIMAGE_MIN_SIZE": "100"}, "ZIMAGE_MIN_SIZE / --min-size must be a positive multiple of 16"),
        ({"ZIMAGE_MIN_SIZE": "1024", "ZIMAGE_MAX_SIZE": "512"}, "(1024) must not exceed ZIMAGE_MAX_SIZE"),
        (
            {"ZIMAGE_MIN_STEPS": "9", "ZIMAGE_MAX_STEPS": "8"},
            "ZIMAGE_MIN_STEPS / --min-steps (9) must not exceed",
        ),
        ({"ZIMAGE_DEVICE": "gpu"}, "ZIMAGE_DEVICE / --device must be auto, cpu, cuda or cuda:N"),
        (
            {"ZIMAGE_ATTENTION_BACKEND": "flash2"},
            "ZIMAGE_ATTENTION_BACKEND / --attention-backend 'flash2' is not known",
        ),
        (
            {"ZIMAGE_CPU_OFFLOAD": "1", "ZIMAGE_DEVICE": "cpu"},
            "ZIMAGE_CPU_OFFLOAD / --cpu-offload needs a CUDA device",
        ),
        ({"ZIMAGE_MODEL": "  "}, "ZIMAGE_MODEL / --model is empty"),
        ({"ZIMAGE_LOG_LEVEL": "LOUD"}, "ZIMAGE_LOG_LEVEL / --log-level must be DEBUG"),
        ({"ZIMAGE_OUTPUT_DIR": ""}, "ZIMAGE_OUTPUT_DIR / --output-dir is empty"),
        ({"ZIMAGE_MAX_BATCH": "4"}, "Unknown setting ZIMAGE_MAX_BATCH; did you mean ZIMAGE_MAX_BATCH_SIZE?"),
    ],
)
def test_bad_values_stop_start_up_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_sources([], env)


def test_unknown_flags_are_refused() -> None:
    with pytest.raises(SettingsError, match="Unknown argument"):
        Settings.from_sources(["--max-batch", "4"], {})


def test_the_settings_page_is_generated_from_the_table_and_current() -> None:
    page = (PROJECT / "docs" / "settings.md").read_text("utf-8")
    assert page == settings_markdown(), f"docs/settings.md is stale: run {REGENERATE}"
    for name in setting_names():
        assert f"| `{env_name(name)}` | `{flag_name(name)}` |" in page
