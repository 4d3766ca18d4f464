"""Template selection by prompt perplexity: the ranking equals each template's prompts scored by
hand, one prompt at a time; it is deterministic; the evaluation twin keeps only the chosen
templates' examples; the report carries the ranking; the command ranks a local task."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from optiml.bench.sources import common
from optiml.evaluation import prompt_selection, registration, report
from optiml.evaluation.inference import EvalExample, Inferencer
from optiml.evaluation.plan import EvalTask
from optiml.models import opt

seqio = pytest.importorskip("seqio")

CONFIG = opt.named_config("tiny", dtype="float32", dropout=0.0, max_positions=48)
TASK = "optiml:promptsource:test_prompt_selection"
VOCAB = seqio.ByteVocabulary()
TEMPLATES = {  # name -> prompt pattern; the long one is cut at max_positions - 1 tokens
    "plain": "{x} is it?",
    "question": "Question: is {x} true? Answer:",
    "noisy": "zq#{x}!!~~ qz",
    "long": "Read this carefully, then tell me, honestly and at length: {x}",
}
ROWS = ["the sky is blue", "cats purr", "ice melts", "two plus two", "rain falls", "a b c"]


def _examples(split: str) -> list[common.Example]:
    del split
    return [
        common.Example(f"{i}|{name}", pattern.format(x=row), " yes", ("yes",), ("yes", "no"), 0)
        for i, row in enumerate(ROWS)
        for name, pattern in TEMPLATES.items()
    ]


@pytest.fixture(scope="module")
def task() -> str:
    if TASK in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(TASK)
    features = {
        "inputs": seqio.Feature(VOCAB, add_eos=False, required=False),
        "targets": seqio.Feature(VOCAB, add_eos=True),
    }
    seqio.TaskRegistry.add(
        TASK,
        source=common.function_source(TASK, _examples),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=features,
        metric_fns=[],
    )
    return TASK


@pytest.fixture(scope="module")
def inferencer() -> Inferencer:
    return Inferencer(opt.init_params(CONFIG, jax.random.key(1)), CONFIG, batch_size=4)


def _by_hand(inferencer: Inferencer, num_inputs: int) -> list[tuple[str, float]]:
    """Each template's prompts scored alone: mean over its first `num_inputs` rows (in the
    selection's seeded order) of log p(prompt | BOS) / tokens, best first."""
    order = sorted(
        range(len(ROWS)), key=lambda i: common.pick(0, 2**61, "prompt selection", TASK, str(i))
    )
    out = []
    for name, pattern in TEMPLATES.items():
        means = []
        for i in order[:num_inputs]:
            ids = tuple(VOCAB.encode(pattern.format(x=ROWS[i])))[: CONFIG.max_positions - 1]
            (total,) = inferencer.score_examples([EvalExample(0, (2,), ids)])
            means.append(total / len(ids))
        out.append((name, float(np.mean(means))))
    return sorted(out, key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize("num_inputs", [3, 32])
def test_ranking_equals_each_template_scored_by_hand(task, inferencer, num_inputs) -> None:
    ranked = prompt_selection.rank_task(task, "test", inferencer, VOCAB.encode, num_inputs)
    expected = _by_hand(inferencer, num_inputs)
    assert [s.template for s in ranked] == [name for name, _ in expected]
    np.testing.assert_allclose(
        [s.log_likelihood for s in ranked], [v for _, v in expected], rtol=1e-5
    )
    assert {s.prompts for s in ranked} == {min(num_inputs, len(ROWS))}
    assert len(VOCAB.encode(TEMPLATES["long"].format(x=ROWS[0]))) > CONFIG.max_positions - 1


def test_selection_is_deterministic_and_restricts_the_plan(task, inferencer) -> None:
    spec = EvalTask(task=f"{task}", level="fully_heldout", category="c", benchmark="promptsource",
                    name="t", split="test", answer_type="rank")  # fmt: skip
    first = prompt_selection.select([spec], inferencer, 2, num_inputs=4)
    again = prompt_selection.select([spec], inferencer, 2, num_inputs=4)
    assert first == again
    (chosen,), rankings = first
    rows = rankings[f"{task} (test)"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["selected"] for r in rows] == [True, True, False, False]
    assert chosen.templates == tuple(sorted(r["template"] for r in rows[:2]))
    assert dataclasses.replace(chosen, templates=()) == spec


def test_an_untemplated_task_is_left_as_it_is(inferencer) -> None:
    assert prompt_selection.sample_prompts([common.Example("7", "x", " y")]) == {}


def test_the_evaluation_twin_keeps_only_the_chosen_templates(task) -> None:
    twin = registration.evaluation_task(task, "accuracy", "rank", templates=("noisy", "plain"))
    assert twin != registration.evaluation_task(task, "accuracy", "rank")
    dataset = seqio.get_mixture_or_task(twin).get_dataset(None, split="test", shuffle=False)
    prompts = {ex["inputs_pretokenized"].decode() for ex in dataset.as_numpy_iterator()}
    kept = ("noisy", "plain")
    assert prompts == {TEMPLATES[n].format(x=row) for row in ROWS for n in kept}


def test_the_report_carries_the_ranking(tmp_path) -> None:
    rows = prompt_selection.ranking_record(
        [prompt_selection.TemplateScore("a", -2.0, 4, 40),
         prompt_selection.TemplateScore("b", -3.0, 4, 44)], k=1)  # fmt: skip
    score = report.TaskScore(task="t", level="fully_heldout", category="c", benchmark="ps",
                             name="t", shots=0, metric="accuracy", score=50.0)  # fmt: skip
    built = report.build_report([score], prompt_selection={"t (test)": rows}, paper_model=None)
    report.write_report(built, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["prompt_selection"]["t (test)"][0] == {
        "rank": 1, "template": "a", "log_likelihood": -2.0, "perplexity": 7.3891, "prompts": 4,
        "tokens": 40, "selected": True,
    }  # fmt: skip
    markdown = (tmp_path / "report.md").read_text()
    assert "Gonen et al. 2022" in markdown
    assert "| 1 | a | -2.0000 | 7.4 | 4 | yes |" in markdown
    assert "| 2 | b | -3.0000 | 20.1 | 4 |  |" in markdown


@pytest.mark.slow
@pytest.mark.data
def test_the_command_ranks_a_local_promptsource_task(data_dir, tmp_path, capsys) -> None:
    from opt_testing import save_text_model

    model = save_text_model(tmp_path / "model", data_dir / "gpt2_bpe")
    out = tmp_path / "ranking.json"
    argv = [str(model), "--tasks", "optiml:promptsource:super_glue_cb", "--num_inputs", "2",
            "--top", "3", "--json", str(out)]  # fmt: skip
    assert prompt_selection.main(argv) == 0
    rows = json.loads(out.read_text())["optiml:promptsource:super_glue_cb (test)"]
    assert len(rows) == 15 and sum(r["selected"] for r in rows) == 3
    assert [r["log_likelihood"] for r in rows] == sorted(
        (r["log_likelihood"] for r in rows), reverse=True
    )
    assert "| 1 | " in capsys.readouterr().out
    assert prompt_selection.main([str(model), "--tasks", "optiml:promptsource:nope"]) == 2


FLAN_TASK = "optiml:flan:test_prompt_selection"


@pytest.mark.data  # FLAN's templates.py
def test_flan_templates_are_ranked_and_selected_on_mock_data(data_dir, inferencer) -> None:
    """FLAN draws one template per row; its ranking scores every template on the same rows (by
    hand here: each row's prompt under each template, scored alone) and its evaluation twin
    redraws every row's template among the chosen ones."""
    import tensorflow_datasets as tfds

    from optiml.bench import catalog
    from optiml.bench.sources import flan, tfds_util

    record = catalog.task("optiml:flan:rte")
    if FLAN_TASK in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(FLAN_TASK)
    seqio.TaskRegistry.add(
        FLAN_TASK,
        source=flan.make_source(record),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features={
            "inputs": seqio.Feature(VOCAB, add_eos=False, required=False),
            "targets": seqio.Feature(VOCAB, add_eos=True),
        },  # fmt: skip
        metric_fns=[],
    )
    named = flan.named_templates(record)
    assert [n for n, _ in named] == [f"template {j}" for j in range(9)]  # the 10th inverts
    tfds_util.source.cache_clear()
    with tfds.testing.mock_data(num_examples=5):
        rows = flan._rows(record, "test")
        order = sorted(range(len(rows)), key=lambda i: common.pick(
            0, 2**61, "prompt selection", FLAN_TASK, str(i)))  # fmt: skip
        expected = []
        for name, (pattern, _) in named:
            means = []
            for i in order[:3]:
                delimiter = common.pick_delimiter(0, "rte", str(i))
                text = common.delimited(flan._fill(pattern, rows[i]), delimiter)
                ids = tuple(VOCAB.encode(text))[: CONFIG.max_positions - 1]
                (total,) = inferencer.score_examples([EvalExample(0, (2,), ids)])
                means.append(total / len(ids))
            expected.append((name, float(np.mean(means))))
        expected.sort(key=lambda item: (-item[1], item[0]))
        ranked = prompt_selection.rank_task(FLAN_TASK, "test", inferencer, VOCAB.encode, 3)
        assert [s.template for s in ranked] == [name for name, _ in expected]
        np.testing.assert_allclose([s.log_likelihood for s in ranked],
                                   [v for _, v in expected], rtol=1e-5)  # fmt: skip
        assert {s.prompts for s in ranked} == {3}

        spec = EvalTask(task=FLAN_TASK, level="fully_heldout", category="c", benchmark="flan",
                        name="rte", split="test", answer_type="rank")  # fmt: skip
        selected = prompt_selection.select([spec], inferencer, 2, num_inputs=3)
        assert selected == prompt_selection.select([spec], inferencer, 2, num_inputs=3)
        (chosen,), rankings = selected
        assert chosen.templates == tuple(sorted(name for name, _ in expected[:2]))
        assert [r["template"] for r in rankings[f"{FLAN_TASK} (test)"]] == [
            name for name, _ in expected
        ]
        twin = registration.evaluation_task(FLAN_TASK, "accuracy", templates=chosen.templates)
        dataset = seqio.get_mixture_or_task(twin).get_dataset(None, split="test", shuffle=False)
        got = [(ex["id"].decode(), ex["inputs_pretokenized"].decode())
               for ex in dataset.as_numpy_iterator()]  # fmt: skip
        redrawn = flan.examples(record, "test", only_templates=chosen.templates)
        assert got == [(e.id, e.inputs) for e in redrawn]  # every row, a chosen template each
        assert [e.split("|")[0] for e, _ in got] == [str(i) for i in range(len(rows))]
        assert {common.template_of(e) for e, _ in got} <= set(chosen.templates)
        with pytest.raises(ValueError, match="no template named"):
            flan.examples(record, "test", only_templates=("template 9",))
    tfds_util.source.cache_clear()
