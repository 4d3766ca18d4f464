"""Task and mixture names: one builder, one parser, always seqio-valid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optiml.bench import names


def test_build_and_parse_round_trip():
    name = names.task_name("niv2", "task001_quoref_question_generation", "2shot")
    assert name == "optiml:niv2:task001_quoref_question_generation#2shot"
    assert names.parse_task_name(name) == names.TaskName(
        "niv2", "task001_quoref_question_generation", "2shot"
    )
    plain = names.parse_task_name("optiml:flan:anli_r1")
    assert plain.variant is None and str(plain) == "optiml:flan:anli_r1"


def test_sanitize_makes_raw_ids_seqio_safe():
    assert names.sanitize("super_glue/rte") == "super_glue_rte"
    assert names.sanitize("anli-r1 ") == "anli_r1"
    with pytest.raises(ValueError, match="cannot build"):
        names.sanitize("///")


@pytest.mark.parametrize(
    "bad",
    ["niv2:task1", "optiml:niv2", "optiml:niv2:a:b", "other:niv2:t", "optiml:niv2:t#", "optiml::t"],
)
def test_parser_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="not an optiml task name"):
        names.parse_task_name(bad)


def test_builder_rejects_unsafe_parts():
    with pytest.raises(ValueError, match="invalid task"):
        names.task_name("niv2", "super_glue/rte")


def test_mixture_names():
    assert names.mixture_name("niv2_test") == "optiml_mix:niv2_test"
    assert names.parse_mixture_name("optiml_mix:niv2_test") == "niv2_test"
    with pytest.raises(ValueError, match="mixture"):
        names.parse_mixture_name("optiml:niv2_test")


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_any_sanitized_name_is_seqio_valid_and_round_trips(bench, task):
    try:
        b, t = names.sanitize(bench), names.sanitize(task)
    except ValueError:
        return
    name = names.task_name(b, t, "5shot")
    assert names.SEQIO_NAME_RE.match(name)
    assert names.parse_task_name(name) == names.TaskName(b, t, "5shot")
