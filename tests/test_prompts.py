import pytest

from webui.prompts import TemplateError, parse_prompts, prompts_from_file


def test_one_prompt_per_line_skipping_blanks_and_comments() -> None:
    text = "a red sneaker\n\n  # a note\n   a navy mug  \r\n#another\n\t\nan olive bag, side view"
    assert parse_prompts(text) == ["a red sneaker", "a navy mug", "an olive bag, side view"]


def test_a_hash_inside_a_prompt_is_kept() -> None:
    assert parse_prompts("colour #ff0000 sneaker") == ["colour #ff0000 sneaker"]


def test_an_empty_box_gives_no_prompts() -> None:
    assert parse_prompts("") == [] and parse_prompts("\n # only comments\n\n") == []


def test_a_template_line_expands_to_every_combination_in_reading_order() -> None:
    assert parse_prompts("a {red|navy|olive} sneaker, {front|side} view") == [
        "a red sneaker, front view",
        "a red sneaker, side view",
        "a navy sneaker, front view",
        "a navy sneaker, side view",
        "a olive sneaker, front view",
        "a olive sneaker, side view",
    ]


def test_groups_nest_and_alternatives_may_be_empty() -> None:
    assert parse_prompts("{red|navy {matte|glossy}} mug") == ["red mug", "navy matte mug", "navy glossy mug"]
    assert parse_prompts("a {|leather} bag") == ["a bag", "a leather bag"]  # no double space


def test_escaped_braces_and_bars_are_plain_characters() -> None:
    assert parse_prompts(r"logo \{brand\} a\|b, {x|y} path C:\photos \\{1|2}") == [
        r"logo {brand} a|b, x path C:\photos \1",
        r"logo {brand} a|b, x path C:\photos \2",
        r"logo {brand} a|b, y path C:\photos \1",
        r"logo {brand} a|b, y path C:\photos \2",
    ]
    assert parse_prompts("a | b") == ["a | b"]  # a bar outside braces is text


def test_unbalanced_braces_name_the_line_and_column() -> None:
    with pytest.raises(TemplateError, match=r"Line 3: '\{' at column 3 is never closed"):
        parse_prompts("fine\n# comment {\na {red|navy sneaker")
    with pytest.raises(TemplateError, match=r"Line 1: '\}' at column 6 closes no '\{'"):
        parse_prompts("a red} sneaker")


def test_the_limit_applies_to_the_expanded_count_before_anything_is_expanded() -> None:
    box = "{a|b}{c|d}{e|f}\nplain"  # 8 + 1 prompts
    assert len(parse_prompts(box, limit=9)) == 9
    with pytest.raises(
        TemplateError,
        match=r"Too many prompts: 9, from 2 lines with templates \(the limit is 8 per request\)",
    ):
        parse_prompts(box, limit=8)
    huge = "{0|1|2|3|4|5|6|7|8|9}" * 30  # 10^30 prompts: counted, never built
    with pytest.raises(TemplateError, match=r"Too many prompts: 10{30}, from 1 line with templates"):
        parse_prompts(huge, limit=100)


def test_a_txt_file_is_the_prompt_box_as_it_is() -> None:
    text = "a red sneaker\n# a note\na {navy|olive} mug\n"
    assert prompts_from_file("shots.TXT", text.encode(), 1000) == text


def test_a_csv_file_gives_its_prompt_column_or_its_first() -> None:
    with_header = (
        '\ufeffsku,Prompt,notes\n1,"a red sneaker, front view",x\n2,"a navy mug,\nside view",\n3,,\n'
    )
    assert (
        prompts_from_file("shots.csv", with_header.encode(), 1000)
        == "a red sneaker, front view\na navy mug, side view"
    )
    assert (
        prompts_from_file("plain.csv", b"a red sneaker,1\na navy mug,2\n", 1000)
        == "a red sneaker\na navy mug"
    )


def test_a_prompt_file_of_the_wrong_kind_size_or_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match=r"from a \.txt or \.csv file \(got 'shots\.xlsx'\)"):
        prompts_from_file("shots.xlsx", b"PK...", 1000)
    with pytest.raises(ValueError, match="The prompt file is 1,001 bytes; the limit is 1,000"):
        prompts_from_file("shots.txt", b"a" * 1001, 1000)
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 7\)"):
        prompts_from_file("shots.txt", b"a red \xff sneaker", 1000)
