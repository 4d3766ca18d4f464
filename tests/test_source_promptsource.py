"""PromptSource: YAML templates, its Jinja semantics, and every local dataset rendered."""

from __future__ import annotations

import logging

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common
from optiml.bench.sources import promptsource as ps

LOCAL_TASKS = [
    "super_glue_rte", "super_glue_cb", "super_glue_wsc.fixed", "super_glue_axg",
    "super_glue_boolq", "super_glue_copa", "super_glue_wic", "super_glue_multirc",
    "super_glue_record", "piqa",
]  # fmt: skip


def _template(jinja: str, choices: str | None = None) -> ps.Template:
    return ps.Template("id0", "t", jinja, choices, True)


def test_render_follows_promptsource_semantics():
    t = _template(
        "{{ premise }} Question: {{ hypothesis }}? ||| {{ answer_choices[label] }}", "Yes ||| No"
    )
    prompt, target, choices = ps.render(t, {"premise": "A ||| B", "hypothesis": "C", "label": 1})
    assert (prompt, target, choices) == ("A ||| B Question: C?", "No", ["Yes", "No"])
    # every `}}` is truncated to 2048 characters (jinja's truncate: 2045 + "...")
    long = ps.render(_template("{{ x }} ||| y"), {"x": "w" * 5000})[0]
    assert len(long) == 2048 and long.endswith("...")
    # `choice` is seeded per example: same seed, same pick; a restricted key is refused
    pick = _template("Q ||| {{ answers | choice }}")
    row = {"answers": [str(i) for i in range(50)]}
    assert ps.render(pick, row, "s1") == ps.render(pick, row, "s1")
    assert len({ps.render(pick, row, f"s{i}")[1] for i in range(20)}) > 1
    with pytest.raises(ps.TemplateError, match="restricted key"):
        ps.render(t, {"answer_choices": 1})
    with pytest.raises(ps.TemplateError, match="need a non-empty prompt and target"):
        ps.render(_template("{{ x }} ||| {% if y %}{{ y }}{% endif %}"), {"x": "a", "y": ""})
    with pytest.raises(ps.TemplateError, match="not one of the answer choices"):
        ps.render(_template("q ||| maybe", "yes ||| no"), {})
    with pytest.raises(ps.TemplateError, match="render error: UndefinedError"):
        ps.render(_template("{{ x.y.z }} ||| a"), {})


def test_templates_yaml_keeps_original_task_templates_only(tmp_path):
    folder = tmp_path / "toy" / "sub"
    folder.mkdir(parents=True)
    (folder / "templates.yaml").write_text(
        "dataset: toy\nsubset: sub\ntemplates:\n"
        "  a1: !Template\n    answer_choices: yes ||| no\n    id: a1\n"
        "    jinja: '{{x}} ||| yes'\n    metadata: !TemplateMetadata\n"
        "      original_task: true\n    name: orig\n    reference: ''\n"
        "  b2: !Template\n    answer_choices: null\n    id: b2\n"
        "    jinja: '{{x}} ||| {{x}}'\n    metadata: !TemplateMetadata\n"
        "      original_task: false\n    name: other\n    reference: ''\n"
    )
    (templates,) = [ps.load_templates("toy/sub", tmp_path)]
    assert [t.name for t in templates] == ["orig"] and templates[0].answer_choices == "yes ||| no"
    with pytest.raises(common.SourceDataError, match="PromptSource toy/none: no templates file"):
        ps.load_templates("toy/none", tmp_path)


@pytest.mark.slow
@pytest.mark.data
def test_every_local_template_renders_or_is_dropped_with_a_reason(data_dir, monkeypatch, caplog):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    caplog.set_level(logging.INFO, logger=ps.__name__)
    ps._cached_examples.cache_clear()  # the drop is logged when examples are built, once
    dropped = {}
    for task in LOCAL_TASKS:
        record = catalog.task(f"optiml:promptsource:{task}")
        templates = ps.load_templates(record.source_id)
        checks = ps.check_templates(record, "test")
        assert set(checks) == {t.name for t in templates}
        kept = [n for n, reason in checks.items() if reason is None]
        dropped.update({(task, n): r for n, r in checks.items() if r})
        test = ps.examples(record, "test")
        rows = ps._rows(record, "test")
        assert len(test) == len(rows) * len(kept) == ps.count_examples(record, "test"), task
        assert len(ps.examples(record, "validation")) == min(250, len(test))
        for e in test[:50]:
            assert e.targets.startswith(" ") and e.inputs and e.references == (e.targets[1:],)
            if record.answer_type == "rank":
                assert e.options[e.label] == e.targets[1:]
        # training: one template per example, every example kept when a template applies to it
        train = ps.examples(record, "train")
        assert len(train) == len(ps._rows(record, "train")) == ps.count_examples(record, "train")
        assert len({e.id for e in train}) == len(train)
    # COPA's cause-only/effect-only templates do not apply to every example: dropped, logged
    copa = {n for (task, n) in dropped if task == "super_glue_copa"}
    assert len(copa) == 4 and all("renders to 1 part(s)" in r for r in dropped.values())
    for _, name in dropped:
        assert any(name in m and "dropped in evaluation" in m for m in caplog.messages)


@pytest.mark.data
def test_train_picks_one_template_per_example_at_random(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    record = catalog.task("optiml:promptsource:super_glue_rte")
    a, b = ps.examples(record, "train"), ps.examples(record, "train", seed=1)
    assert len(a) == len(b) == 2490
    assert a == ps.examples(record, "train")  # deterministic
    prompts = {e.inputs.split("\n")[-1] for e in a}  # delimiters and templates vary
    assert len(prompts) > 5 and sum(x.inputs != y.inputs for x, y in zip(a, b, strict=True)) > 1000
    # 5-shot evaluation: demonstrations from the training rows before the example, same template
    shot = ps.examples(record, "test", num_demos=5)[0]
    assert shot.inputs.count("\n\n") >= 5 and shot.inputs.endswith(
        ps.examples(record, "test")[0].inputs.split("\n\n")[-1].split("\n")[-1]
    )


@pytest.mark.data
def test_a_dataset_without_local_data_is_reported_by_name(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    record = catalog.task("optiml:promptsource:ag_news")
    with pytest.raises(common.SourceDataError, match="PromptSource ag_news: Hugging Face dataset"):
        ps.count_examples(record, "train")
