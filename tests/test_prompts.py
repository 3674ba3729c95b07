from webui.prompts import parse_prompts


def test_one_prompt_per_line_skipping_blanks_and_comments() -> None:
    text = "a red sneaker\n\n  # a note\n   a navy mug  \r\n#another\n\t\nan olive bag, side view"
    assert parse_prompts(text) == ["a red sneaker", "a navy mug", "an olive bag, side view"]


def test_a_hash_inside_a_prompt_is_kept() -> None:
    assert parse_prompts("colour #ff0000 sneaker") == ["colour #ff0000 sneaker"]


def test_an_empty_box_gives_no_prompts() -> None:
    assert parse_prompts("") == [] and parse_prompts("\n # only comments\n\n") == []
