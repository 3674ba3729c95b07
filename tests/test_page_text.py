"""What the page says, as pure functions: count line, summary, captions, table rows, progress,
and every message in English and Chinese. No server, no model."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webui.jobs.record import BLACK, DONE, SAVED, STOPPED, JobRecord
from webui.jobs.views import Identity, JobSummary, views_of
from webui.lane import Progress
from webui.limits import check_numbers
from webui.prompts import TemplateError, parse_prompts
from webui.request import GenerationRequest, RequestError
from webui.settings import Settings
from webui.ui import text
from webui.ui.i18n import I18N
from webui.words import _EN, _ZH, CHINESE, ENGLISH, language_of, say

ALICE = Identity(user="alice")


def finished_job(tmp_path: Path, status: str = DONE, per: int = 2) -> JobRecord:
    request = GenerationRequest(
        ["a red mug", "一只猫坐在窗台上"], images_per_prompt=per, seed=40, width=64, height=64
    )
    record = JobRecord.plan(request, output_root=tmp_path, model="demo model", demo=True, owner="alice")
    for image in record.images:
        image.state = SAVED
    record.status, record.elapsed_s = status, 2.0
    return record


def test_every_message_has_both_languages_with_the_same_values() -> None:
    assert set(_EN) == set(_ZH)
    for key, english in _EN.items():
        chinese = _ZH[key]
        if isinstance(english, str) and isinstance(chinese, str):
            names = {field for _, field, _, _ in string.Formatter().parse(english) if field}
            assert names == {field for _, field, _, _ in string.Formatter().parse(chinese) if field}, key


def test_the_page_speaks_its_browsers_first_language() -> None:
    assert language_of("zh-CN,zh;q=0.9,en;q=0.8") == CHINESE
    assert language_of("zh") == language_of("zh-Hans-CN") == CHINESE
    assert language_of("en-US,zh-CN;q=0.5") == ENGLISH
    assert language_of("zh-TW") == language_of(None) == language_of("") == ENGLISH  # as the labels do


def test_errors_name_the_limit_in_english_and_in_chinese() -> None:
    with pytest.raises(RequestError) as caught:
        check_numbers(GenerationRequest(["a"], width=520), Settings().validate())
    assert str(caught.value) == "Width must be a multiple of 16 (got 520; try 512 or 528)."
    assert say(caught.value, CHINESE) == "宽度必须是 16 的倍数（当前为 520；可以试试 512 或 528）。"
    with pytest.raises(TemplateError) as bad:
        parse_prompts("fine\na {red|navy mug")
    assert str(bad.value) == "Line 2: '{' at column 3 is never closed (write \\{ for the character)."
    assert say(bad.value, CHINESE) == "第 2 行：第 3 列的 '{' 没有闭合（要输入这个字符本身，请写 \\{）。"
    with pytest.raises(TemplateError) as many:
        parse_prompts("a {1|2|3} mug", limit=2)
    assert str(many.value) == "Too many prompts: 3, from 1 line with templates (the limit is 2 per request)."
    assert say(ValueError("not ours"), CHINESE) == "not ours"  # anything else as it is


def test_the_count_line_counts_prompts_times_variants_and_warns_past_the_limit() -> None:
    assert text.count_text("a\nb\n# c", 3, 10, 100) == "2 prompts x 3 = **6 images**"
    assert text.count_text("a", 1, 10, 100) == "1 prompt x 1 = **1 image**"
    assert text.count_text("a {x|y}", 2, 10, 3).endswith(" **over the limit** (10 prompts, 3 images)")
    assert text.count_text("a\nb", 3, 10, 100, CHINESE) == "2 条提示词 x 3 = **6 张图片**"
    assert (
        text.count_text("a {x", 1, 10, 100, CHINESE)
        == "**第 1 行：第 3 列的 '{' 没有闭合（要输入这个字符本身，请写 \\{）。**"
    )


def test_the_summary_says_what_was_made_how_fast_and_which_seeds(tmp_path: Path) -> None:
    record = finished_job(tmp_path)
    assert text.summary(record) == (
        f"4 images in 2.0 s, 2.00 images/s, seeds 40..43 (demo model) (job {record.id})"
    )
    assert text.summary(record, CHINESE) == (
        f"4 张图片，用时 2.0 秒，每秒 2.00 张，种子 40..43（演示模型）（任务 {record.id}）"
    )
    record.status, record.images[3].state = STOPPED, BLACK
    assert text.summary(record).startswith("Stopped: 3 of 4 images kept in 2.0 s")
    assert ". 1 image came out black and was not saved (seed 43)" in text.summary(record)


def test_captions_mark_starred_images_and_outputs_carry_what_the_actions_need(tmp_path: Path) -> None:
    record = finished_job(tmp_path)
    record.images[2].starred = True
    out = text.outputs(record)
    assert [caption for _, caption in out["gallery"]][1:3] == [
        "a red mug (seed 41)",
        "★ 一只猫坐在窗台上 (seed 42)",
    ]
    third = out["details"][2]
    assert (third["job_id"], third["index"], third["starred"], third["seed"]) == (record.id, 2, True, 42)
    assert third["file"].endswith("003_一只猫坐在窗台上_s42.png")  # the prompt's own letters
    assert out["download"].endswith("images.zip") and out["sheet"].endswith("contact-sheet.png")
    assert text.picked_line(third) == f"seed 42 · 64x64 · `{third['file']}`"
    single = finished_job(tmp_path, per=1)
    single.images[1:] = []
    assert text.outputs(single)["download"].endswith(".png") and text.outputs(single)["sheet"] is None


def test_history_and_queue_rows_in_either_language(tmp_path: Path) -> None:
    when = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    job = JobSummary("abc", when, "done", "alice", "a red mug", 3, 6, 6, 64, 64)
    assert text.history_row(job) == [
        "2026-12-01 09:30:00",
        "done",
        "a red mug (+2 more)",
        "6 of 6",
        "64x64",
        "alice",
        "abc",
    ]
    assert text.history_row(job, CHINESE)[1:4] == ["完成", "a red mug（另有 2 条）", "6/6"]
    record = finished_job(tmp_path)
    record.status = "queued"
    running = Progress(step=3, steps=8, images_done=0, chunk_images=2, images_total=4)
    view = views_of([(record, True, running)], 0.5)[0]
    assert view.describe() == "images 1-2 of 4, step 3 of 8"
    assert view.describe(CHINESE) == "第 1-2 张，共 4 张，第 3/8 步"
    mine = text.queue_row(view, ALICE)
    assert mine[1:4] == ["running", "alice (you)", "a red mug (+1 more)"] and mine[6] == "■ Stop"
    theirs = text.queue_row(view, Identity(user="bob"), CHINESE)
    assert theirs[1:3] == ["运行中", "alice"] and theirs[6] == ""
    assert text.queue_row(view, Identity(user="dana", admin=True))[6] == "■ Stop"  # an admin stops any
    assert text.table([mine], "queue_columns", CHINESE)["headers"][:3] == ["#", "状态", "提交者"]
    behind = finished_job(tmp_path)
    behind.status = "queued"
    waiting = views_of([(record, True, None), (behind, False, None)], 0.5)[1]
    assert waiting.describe().startswith("1 job ahead of yours, about ")
    assert waiting.describe(CHINESE).startswith("前面还有 1 个任务，约 ")


def test_the_count_line_shown_before_anything_is_typed_is_what_the_count_says() -> None:
    assert I18N.translations["en"]["count_empty"] == text.count_text("", 1, 10, 100)
    assert I18N.translations["zh-CN"]["count_empty"] == text.count_text("", 1, 10, 100, CHINESE)
