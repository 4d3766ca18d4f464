"""The whole evaluation path with known model outputs: seqio tasks -> Evaluator -> metrics ->
per-task results on disk -> hand-computed report; and resuming skips finished tasks -- only those
saved for the same weights and plan entry."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from optiml import errors, fingerprint
from optiml.bench import catalog
from optiml.evaluation import evaluate, metrics, plan, registration, runner
from optiml.evaluation import rank_classification as rc

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

VOCAB = seqio.ByteVocabulary()
KNOWN = {"weights": "known-outputs"}  # the provenance of the KnownOutputs stand-in
RANK_EXAMPLES = [  # 5 examples; known log-likelihoods below make 3 of the first 4 right
    {"inputs": "2+2=", "options": ["3", "4"], "label": 1},
    {"inputs": "sky", "options": ["blue", "red"], "label": 0},
    {"inputs": "sun", "options": ["hot", "cold"], "label": 0},
    {"inputs": "ice", "options": ["hot", "cold"], "label": 1},
    {"inputs": "extra", "options": ["a", "b"], "label": 0},
]
LOGLIK = {
    ("2+2=", " 3"): -3.0,
    ("2+2=", " 4"): -1.0,  # right
    ("sky", " blue"): -1.0,
    ("sky", " red"): -2.0,  # right
    ("sun", " hot"): -1.0,
    ("sun", " cold"): -1.5,  # right
    ("ice", " hot"): -1.0,
    ("ice", " cold"): -2.0,  # wrong
    ("extra", " a"): -9.0,
    ("extra", " b"): -1.0,  # wrong, but past the 4-example cap
}
GEN_EXAMPLES = [  # (input, references, model output)
    ("say yes", ["Yes"], "yes!"),  # ROUGE-L 1.0
    ("cats", ["the cat runs"], "The cats are running."),  # 6/7
    ("nothing", ["abc", "xyz"], ""),  # 0
]


def _register() -> tuple[str, str]:
    def rank_source(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_generator(
            lambda: iter(RANK_EXAMPLES),
            output_signature={
                "inputs": tf.TensorSpec([], tf.string),
                "options": tf.TensorSpec([None], tf.string),
                "label": tf.TensorSpec([], tf.int64),
            },
        )

    def gen_source(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_generator(
            lambda: (
                {"inputs": i, "targets": " " + r[0], "references": r} for i, r, _ in GEN_EXAMPLES
            ),
            output_signature={
                "inputs": tf.TensorSpec([], tf.string),
                "targets": tf.TensorSpec([], tf.string),
                "references": tf.TensorSpec([None], tf.string),
            },
        )

    features = {
        "inputs": seqio.Feature(VOCAB, add_eos=False),
        "targets": seqio.Feature(VOCAB, add_eos=True),
    }
    rank, gen = "optiml_test_eval_rank", "optiml_test_eval_gen"
    for name in (rank, gen):
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        rank,
        source=seqio.FunctionDataSource(rank_source, splits=["validation"]),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=features,
        metric_fns=[],  # like the registry's tasks: the runner adds expansion and metrics
    )
    seqio.TaskRegistry.add(
        gen,
        source=seqio.FunctionDataSource(gen_source, splits=["test"]),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=features,
        postprocess_fn=metrics.references_postprocessor,
        metric_fns=[metrics.rouge, metrics.exact_match],  # a task with its own metrics
    )
    return rank, gen


class KnownOutputs:
    """A stand-in model whose outputs are fixed per input text (read back from the features)."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def _split(ex):
        """(input text, target text) from the decoder features: loss weights mark the target."""
        weights = ex["decoder_loss_weights"] > 0
        start = int(weights.argmax())
        prompt = ex["decoder_target_tokens"][:start].tolist()
        return VOCAB.decode(prompt), VOCAB.decode(ex["decoder_target_tokens"][weights].tolist())

    def score_fn(self, dataset, model_feature_shapes=None):
        self.calls.append("score")
        rows = list(dataset.as_numpy_iterator())
        self.scored_lengths = [int((ex["decoder_loss_weights"] > 0).sum()) for _, ex in rows]
        return [(int(i), LOGLIK[self._split(ex)]) for i, ex in rows]

    def predict_fn(self, dataset, model_feature_shapes=None):
        self.calls.append("predict")
        outputs = {i: o for i, _, o in GEN_EXAMPLES}
        result = []
        for i, ex in dataset.as_numpy_iterator():
            ids = VOCAB.encode(outputs[self._split(ex)[0]])
            result.append((int(i), ids + [VOCAB.eos_id] * (32 - len(ids))))  # EOS-filled
        return result


def _plan(rank: str, gen: str) -> list[plan.EvalTask]:
    return [
        plan.EvalTask(
            rank,
            "fully_heldout",
            "Cause Effect",
            "promptsource",
            "copa",
            shots=0,
            split="validation",
            max_examples=4,
            answer_type="rank",
            metric="accuracy",
        ),
        plan.EvalTask(gen, "fully_heldout", "Word Analogy", "niv2", "bard", shots=0, split="test"),
    ]


def test_known_outputs_give_the_hand_computed_report(tmp_path) -> None:
    rank, gen = _register()
    printed = []
    rep = runner.run_plan(
        _plan(rank, gen), KnownOutputs(), tmp_path, provenance=KNOWN, print_fn=printed.append
    )
    level = rep["levels"]["fully_heldout"]
    rouge = round(100 * (1 + 6 / 7 + 0) / 3, 4)
    # rank: first 4 examples only (8 rows), 3 right -> 75; generation ROUGE-L mean x100
    assert level["categories"] == {"Cause Effect": {"0": 75.0}, "Word Analogy": {"0": rouge}}
    assert level["combined"] == round((75.0 + rouge) / 2, 4)
    saved = json.loads((tmp_path / "eval" / f"{rank}.json").read_text())
    assert saved["num_rows"] == 8 and saved["metric"] == "accuracy"
    assert saved["samples"][1] == {"target": " 4", "score": -1.0}
    assert saved["metrics"] == {"accuracy": 75.0}
    assert saved["spec"]["scoring"] == {"include_eos": True, "length_normalization": "none"}
    assert registration.evaluation_task(rank, "accuracy", "rank") == "optiml_test_eval_rank_eval"
    assert registration.evaluation_task(gen, "rougeL") == gen  # has metrics: used as is
    saved = json.loads((tmp_path / "eval" / f"{gen}.json").read_text())
    # ROUGE-1 of "The cats are running." vs "the cat runs" is 6/7 too (3 stemmed unigrams)
    assert saved["metrics"] == {"rouge1": rouge, "rougeL": rouge, "exact_match": round(100 / 3, 4)}
    assert saved["samples"][1] == {"target": " the cat runs", "prediction": "The cats are running."}
    assert (tmp_path / "report.png").is_file() and "Fully held-out" in printed[0]
    assert "- rank classification: summed option log-likelihood, EOS included, no length " \
        "normalization" in printed[0]  # fmt: skip


def test_rank_scoring_without_eos_by_characters(tmp_path) -> None:
    rank, gen = _register()
    scoring = rc.Scoring(include_eos=False, length_normalization="characters")
    spec = dataclasses.replace(_plan(rank, gen)[0], scoring=scoring)
    model = KnownOutputs()
    printed = []
    runner.run_plan([spec], model, tmp_path, provenance=KNOWN, print_fn=printed.append)
    # the model saw the option bytes only: " 3" is 2 scored tokens, no EOS
    assert sorted(model.scored_lengths) == [2, 2, 4, 4, 4, 5, 5, 5]
    saved = json.loads((tmp_path / "eval" / f"{rank}.json").read_text())
    # per character: " 3" -3/1 < " 4" -1/1 right; " blue" -1/4 > " red" -2/3 right; " hot"
    # -1/3 > " cold" -1.5/4 right; " hot" -1/3 > " cold" -2/4 wrong -> 75
    assert saved["metrics"] == {"accuracy": 75.0}
    assert "EOS not scored, divided by the option's characters" in printed[0]
    name = registration.evaluation_task(rank, "accuracy", "rank", max_examples=4, scoring=scoring)
    assert name == "optiml_test_eval_rank_eval_first4_noeos_characters"


def test_resume_skips_finished_tasks(tmp_path) -> None:
    rank, gen = _register()
    specs = _plan(rank, gen)
    first = runner.run_plan(specs, KnownOutputs(), tmp_path, provenance=KNOWN, print_fn=None)
    (tmp_path / "eval" / f"{gen}.json").unlink()  # interrupted in the second task
    model = KnownOutputs()
    again = runner.run_plan(specs, model, tmp_path, provenance=KNOWN, print_fn=None)
    assert model.calls == ["predict"]  # the rank task was not redone
    assert again == first
    saved = json.loads((tmp_path / "eval" / f"{rank}.json").read_text())
    assert saved["provenance"] == KNOWN and len(saved["plan_entry"]) == 16
    changed = [plan.EvalTask(**{**specs[0].__dict__, "max_examples": 3}), specs[1]]
    with pytest.raises(runner.StaleResult, match=f"{rank}.json: it was saved for another plan e"):
        runner.run_plan(changed, model, tmp_path, provenance=KNOWN, on_stale="refuse")
    runner.run_plan(changed, model, tmp_path, provenance=KNOWN, print_fn=None)
    assert model.calls == ["predict", "score"]  # by default the changed entry is redone


def test_results_saved_for_other_weights_are_redone_or_refused(tmp_path, caplog) -> None:
    """Before: evaluating step 20 into a folder holding step 30's results reused them all."""
    rank, gen = _register()
    specs = _plan(rank, gen)
    step30, step20 = {"weights": "3f9c0a1d", "step": 30}, {"weights": "77aa01b2", "step": 20}
    runner.run_plan(specs, KnownOutputs(), tmp_path, provenance=step30, print_fn=None)
    files = sorted((tmp_path / "eval").iterdir())
    before = [path.read_text() for path in files]
    with pytest.raises(runner.StaleResult) as error:
        runner.run_plan(specs, KnownOutputs(), tmp_path, provenance=step20, on_stale="refuse")
    assert str(error.value) == (
        f"{runner.result_path(tmp_path, specs[0])} and 1 more: it was saved for step 30, weights "
        "3f9c0a1d, not step 20, weights 77aa01b2; delete them, evaluate into another run_dir, or "
        "pass on_stale='rerun'"
    )
    assert isinstance(error.value, errors.RunStopped)  # optiml.main: this one line, exit 1
    assert [path.read_text() for path in files] == before  # nothing touched
    model = KnownOutputs()
    with caplog.at_level(logging.WARNING):
        runner.run_plan(specs, model, tmp_path, provenance=step20, print_fn=None)
    assert model.calls == ["score", "predict"]  # both tasks evaluated again
    [line] = [r.getMessage() for r in caplog.records if "evaluating them again" in r.getMessage()]
    assert "saved for step 30, weights 3f9c0a1d, not step 20" in line
    for path in files:
        assert json.loads(path.read_text())["provenance"] == step20


@pytest.mark.data
def test_registry_plan(data_dir) -> None:
    dev = plan.plan_from_registry(phase="dev", shots=(0, 5), max_tasks_per_level=2)
    # dev = Table 15: its fully supervised tasks (FLAN/PromptSource SQuAD, BST, CNNDM) have no data
    # in ../shared/data
    assert {s.level for s in dev} == {"fully_heldout", "partially_heldout"}
    assert {0, 5} <= {s.shots for s in dev}
    for s in dev:  # honest k-shot: a variant is reported at the demonstrations it really shows
        if s.task.endswith("#5shot"):
            record = catalog.task(s.task)
            loader = catalog.loader(record.benchmark)
            expected = getattr(loader, "reachable_shots", lambda r, sp, k: k)(record, s.split, 5)
            assert s.shots == expected, s.task
    assert all(s.split == "validation" and s.max_examples == 250 for s in dev)
    per_benchmark: dict[tuple[str, str], set[str]] = {}
    for s in dev:
        per_benchmark.setdefault((s.level, s.benchmark), set()).add(s.subtask)
    assert all(1 <= len(subtasks) <= 2 for subtasks in per_benchmark.values()), per_benchmark
    assert any(len(subtasks) == 2 for subtasks in per_benchmark.values())
    assert len({b for (level, b) in per_benchmark if level == "fully_heldout"}) > 1
    assert any(s.task.endswith("#5shot") for s in dev)
    test = plan.plan_from_registry(phase="test", shots=(0,))
    assert all(s.split == "test" and s.max_examples is None for s in test)
    with pytest.raises(ValueError, match="unknown phase"):
        plan.plan_from_registry(phase="train")


@pytest.mark.data
@pytest.mark.slow
def test_evaluate_a_tiny_model_on_the_registry(data_dir, tmp_path) -> None:
    import jax

    from optiml.models import opt

    config = opt.named_config("tiny", dtype="float32")
    params = opt.init_params(config, jax.random.key(0))
    kwargs = dict(
        run_dir=str(tmp_path),
        model_config=config,
        shots=(0,),
        max_examples=3,
        max_tasks_per_level=1,
        batch_size=8,
        max_new_tokens=4,
    )
    rep = evaluate.evaluate(params=params, **kwargs)
    records = [json.loads(p.read_text()) for p in (tmp_path / "eval").glob("*.json")]
    specs = plan.plan_from_registry(phase="dev", shots=(0,), max_examples=3, max_tasks_per_level=1)
    # Every level the plan holds is reported (on the local data Table 15 has no fully supervised
    # task with data, so the dev plan holds the two held-out levels).
    assert set(rep["levels"]) == {s.level for s in specs} >= {"fully_heldout", "partially_heldout"}
    assert len({(s.level, s.benchmark) for s in specs}) == len(specs)  # one task per benchmark
    assert len(records) == len(specs) and all(r["num_rows"] >= 1 for r in records)
    weights = fingerprint.weights_fingerprint(params)  # the same on the evaluation's mesh
    provenance = {"weights": weights, "step": None, "weight_format": "float", "max_new_tokens": 4}
    assert all(r["provenance"] == provenance for r in records)
    with pytest.raises(ValueError, match="one model source"):
        evaluate.evaluate(params=params, params_dir="x", **kwargs)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or folder"):
        evaluate.evaluate(**{**kwargs, "run_dir": str(tmp_path / "empty")})


@pytest.mark.slow
def test_params_dir_takes_a_training_run_and_a_step(tmp_path) -> None:
    """A training run's folder or one of its step folders evaluates that step's params."""
    import jax
    import optax

    from optiml import checkpointing
    from optiml.models import convert, opt
    from optiml.train_step import TrainState

    config = opt.named_config("tiny", dtype="float32")
    run = tmp_path / "train"
    convert.save_config(run, config)  # what the trainer writes
    saver = checkpointing.Checkpointer(run / "checkpoints", save_every=1, async_save=False)
    by_step = {step: opt.init_params(config, jax.random.key(step)) for step in (0, 5)}
    for step, params in by_step.items():
        state = TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1))
        saver.save(step, state, None, force=True)
    saver.close()
    rank, gen = _register()

    def scores(name: str, **source) -> list[float]:
        report = evaluate.evaluate(
            run_dir=str(tmp_path / name), model_config=config, plan=_plan(rank, gen),
            max_new_tokens=4, print_report=False, **source,
        )  # fmt: skip
        return [s["score"] for s in report["scores"]]

    expected = scores("params_0", params=by_step[0])
    assert scores("run_step_0", params_dir=str(run), step=0) == expected
    assert scores("step_folder_0", params_dir=str(run / "checkpoints" / "0")) == expected
    assert scores("newest", params_dir=str(run)) == scores("params_5", params=by_step[5])


@pytest.mark.data
def test_the_fully_supervised_level_holds_the_tasks_trained_on(data_dir) -> None:
    from optiml.bench import mixing

    specs = plan.plan_from_registry(
        phase="dev", shots=(0,), benchmarks=("niv2",), trained_on="optiml_mix:quickstart",
        max_tasks_per_level={"fully_heldout": 2, "partially_heldout": 1},
    )  # fmt: skip
    by_level: dict[str, set[str]] = {}
    for s in specs:
        by_level.setdefault(s.level, set()).add(s.subtask)
    assert by_level["fully_supervised"] == set(mixing.QUICKSTART_TASKS)  # all ten, uncapped
    assert len(by_level["fully_heldout"]) == 2 and len(by_level["partially_heldout"]) == 1
    with pytest.raises(ValueError, match="trained_on='optiml_mix:nope'"):
        plan.plan_from_registry(phase="dev", trained_on="optiml_mix:nope")


def test_eval_gin_binds_the_runner() -> None:
    import gin
    from optiml import main

    try:
        function, model_dir = main.parse_config(
            ["models/tiny.gin", "runs/eval.gin"],
            ["MODEL_DIR = '/tmp/x'", "evaluate.evaluate.shots = [0]"],
            [],
        )
        assert (function.__module__, function.__name__) == (evaluate.__name__, "evaluate")
        assert model_dir == "/tmp/x"
        assert gin.query_parameter("evaluate.evaluate.max_new_tokens") == 256
    finally:
        gin.clear_config(clear_constants=True)
