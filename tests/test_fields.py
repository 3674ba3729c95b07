"""The request's fields are declared once (webui/request.py) and every way in derives from
that table: the REST body and its OpenAPI schema, the batch command's flags, the page's
Generate inputs, the checks of fixed limits, the record and the PNG metadata."""

from __future__ import annotations

import inspect

import pytest

from webui.api.schema import JobIn
from webui.batch import MODEL_DEFAULTS, build_parser
from webui.request import API_FIELDS, FIELDS, FORM_FIELDS, GenerationRequest, RequestError
from webui.ui import layout
from webui.ui.page import Page
from webui.ui.text import PNG_FIELDS, request_from_form


def test_every_api_field_is_in_the_rest_schema_with_its_help_default_and_limits() -> None:
    schema = JobIn.model_json_schema()
    properties = schema["properties"]
    assert set(properties) == {f.name for f in API_FIELDS} | {"images"}
    assert properties["loras"]["default"] == [] and "LoraIn" in str(properties["loras"]["items"])
    for field in API_FIELDS:
        shown = properties[field.name]
        assert shown["description"] == field.spec.help
        if field.name not in ("prompts", "loras"):  # loras: a list of {"name", "strength"}
            assert shown["default"] == (
                list(field.default) if isinstance(field.default, tuple) else field.default
            )
        if field.spec.choices:
            assert shown["enum"] == list(field.spec.choices)
        if field.spec.low is not None:
            assert (shown["minimum"], shown["maximum"]) == (field.spec.low, field.spec.high)
    assert schema["additionalProperties"] is False


def test_every_api_field_is_a_batch_flag_with_its_default() -> None:
    parser = build_parser()
    defaults = vars(parser.parse_args(["--prompts-file", "p.txt", "--out", "o"]))
    for field in API_FIELDS:
        if field.name in ("prompts", "model"):  # the batch runs the model it loads (--model, a setting)
            continue
        found = defaults[field.name]
        if field.name in MODEL_DEFAULTS:  # the loaded model's (Turbo's or base's) unless given
            assert found is None, field.name
        else:
            assert (found if field.name != "loras" else found or ()) == field.default, field.name
    changed = vars(
        parser.parse_args(["--prompts-file", "p", "--out", "o", "--kind", "product", "--strength", "0.3"])
    )
    assert (changed["kind"], changed["strength"]) == ("product", 0.3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--prompts-file", "p", "--out", "o", "--kind", "sculpture"])


def test_every_form_field_is_an_input_of_generate_and_submit_in_the_tables_order() -> None:
    names = [f.name for f in FORM_FIELDS]
    assert list(layout.GENERATE_INPUTS[: len(names)]) == names
    for handler in (Page.generate, Page.submit):
        parameters = list(inspect.signature(handler).parameters)[1:]  # after self
        assert parameters[: len(layout.GENERATE_INPUTS)] == list(layout.GENERATE_INPUTS)
    assert set(layout.FORM_FIELDS) >= set(names)  # reuse fills every one of them


def test_form_values_are_converted_by_their_fields_type() -> None:
    values = {f.name: f.default for f in FORM_FIELDS} | {"prompts": "a\nb", "strength": "0.25", "steps": 4.0}
    request = request_from_form(10, values)
    assert request.prompts == ("a", "b") and request.strength == 0.25 and request.steps == 4
    with pytest.raises(ValueError, match="Strength must be a number"):
        request_from_form(10, values | {"strength": "strong"})
    with pytest.raises(ValueError, match="Steps must be a whole number"):
        request_from_form(10, values | {"steps": 2.5})


def test_the_record_and_the_png_carry_the_tables_fields() -> None:
    request = GenerationRequest(["a"], kind="variation", inputs=["0" * 64], strength=0.3)
    assert set(request.to_record()) == {f.name for f in FIELDS}
    assert GenerationRequest.from_record(request.to_record()) == request
    assert set(PNG_FIELDS) == {"prompt"} | {f.name for f in FIELDS if f.spec.png}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"seed_policy": "every"}, "Seed policy must be one of per-image, per-variant"),
        ({"kind": "sculpture"}, "Kind must be one of text, product, variation"),
        ({"product_scale": 0.01}, "Product size must be a number from 0.1 to 1"),
        ({"strength": float("nan")}, "Strength must be a number from 0 to 1"),
    ],
)
def test_the_tables_fixed_limits_are_checked_by_name(change: dict, words: str) -> None:
    from webui.limits import check_table

    with pytest.raises(RequestError, match=words):
        check_table(GenerationRequest(["a"], **change))
