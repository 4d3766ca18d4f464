"""Rank classification: option expansion, grouping by example, argmax, length normalisation,
and the whole seqio route (task -> Evaluator -> score_fn -> metric) with known scores."""

from __future__ import annotations

import numpy as np
import pytest

from optiml.evaluation import rank_classification as rc


def _cands(rows, chars=None):
    chars = chars or [1] * len(rows)
    return [
        rc.Candidate(example=e, option=o, is_correct=c, num_tokens=n, num_chars=k)
        for (e, o, c, n), k in zip(rows, chars, strict=True)
    ]


def test_argmax_per_example_and_accuracy() -> None:
    targets = _cands(
        [(0, 0, False, 1), (0, 1, True, 1), (1, 0, True, 1), (1, 1, False, 1), (1, 2, False, 1)]
    )
    scores = [-2.0, -1.0, -3.0, -0.5, -4.0]  # example 0 picks option 1 (right), 1 picks 1 (wrong)
    assert rc.group_predictions(targets, scores) == {0: (1, True), 1: (1, False)}
    assert rc.rank_classification(targets, scores) == {"accuracy": 50.0}


def test_ties_go_to_the_first_option_whatever_the_order() -> None:
    targets = _cands([(3, 1, False, 1), (3, 0, True, 1)])
    assert rc.group_predictions(targets, [-1.0, -1.0]) == {3: (0, True)}


def test_length_normalizations_change_the_choice() -> None:
    # option 0: 4 tokens, 2 characters; option 1: 1 token, 12 characters; scores -4 and -3.
    # none: -4 < -3 -> option 1; tokens: -1 > -3 -> option 0; characters: -2 < -0.25 -> option 1
    targets = _cands([(0, 0, True, 4), (0, 1, False, 1)], chars=[2, 12])
    scores = [-4.0, -3.0]
    assert rc.rank_classification(targets, scores) == {"accuracy": 0.0}
    assert rc.rank_classification(targets, scores, "tokens") == {"accuracy": 100.0}
    assert rc.rank_classification(targets, scores, "characters") == {"accuracy": 0.0}
    assert rc.metric_fn(rc.Scoring(length_normalization="tokens"))(targets, scores) == {
        "accuracy": 100.0
    }
    # the same candidates with option 0 long in characters too: -4/20 > -3/12 -> option 0
    assert rc.rank_classification(_cands([(0, 0, True, 4), (0, 1, False, 1)], [20, 12]),
                                  scores, "characters") == {"accuracy": 100.0}  # fmt: skip


def test_scoring_defaults_are_the_papers_and_describe_themselves() -> None:
    assert rc.PAPER == rc.Scoring(include_eos=True, length_normalization="none")
    assert rc.PAPER.describe() == (
        "rank classification: summed option log-likelihood, EOS included, no length normalization"
    )
    assert (
        "EOS not scored, divided by the option's characters"
        in rc.Scoring(False, "characters").describe()
    )
    with pytest.raises(ValueError, match="'bytes' is not one of"):
        rc.Scoring(length_normalization="bytes")


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="2 candidates but 1 scores"):
        rc.group_predictions(_cands([(0, 0, True, 1), (0, 1, False, 1)]), [0.0])
    with pytest.raises(ValueError, match="'idx' and 'is_correct'"):
        rc.rank_classification_postprocessor("x", {"targets": [1]}, is_target=True)


def test_seqio_route_with_known_scores() -> None:
    import seqio
    import tensorflow as tf

    examples = [
        {"inputs": "2+2=", "options": ["3", "4", "5"], "label": 1},
        {"inputs": "sky is", "options": ["blue", " green "], "label": 0},  # stripped
        {"inputs": "1+1=", "options": ["2", "11"], "label": 0},
    ]
    # log-likelihood of each option text: by the sum, every example picks its right option
    loglik = {
        " 3": -5.0,
        " 4": -1.0,
        " 5": -6.0,
        " blue": -2.0,
        " green": -2.5,
        " 2": -3.0,
        " 11": -3.5,
    }

    def source(split, shuffle_files, seed=None):
        del split, shuffle_files, seed
        return tf.data.Dataset.from_generator(
            lambda: iter(examples),
            output_signature={
                "inputs": tf.TensorSpec([], tf.string),
                "options": tf.TensorSpec([None], tf.string),
                "label": tf.TensorSpec([], tf.int64),
            },
        )

    vocab = seqio.ByteVocabulary()
    name = "optiml_test_rank_classification"
    seqio.TaskRegistry.remove(name)
    task = seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(source, splits=["validation"]),
        preprocessors=[
            rc.rank_classification_preprocessor,
            seqio.preprocessors.tokenize,
            seqio.preprocessors.append_eos,
        ],
        output_features={
            "inputs": seqio.Feature(vocab, add_eos=False),
            "targets": seqio.Feature(vocab, add_eos=True),
        },
        postprocess_fn=rc.rank_classification_postprocessor,
        metric_fns=[rc.metric_fn()],
    )
    evaluator = seqio.Evaluator(
        mixture_or_task_name=task.name,
        feature_converter=seqio.DecoderFeatureConverter(pack=False),
        eval_split="validation",
    )

    def score_fn(dataset, model_feature_shapes=None):
        out = []
        for index, ex in dataset.as_numpy_iterator():
            weights = ex["decoder_loss_weights"] > 0
            target = vocab.decode(ex["decoder_target_tokens"][weights].tolist())
            out.append((int(index), loglik[target]))
        return out[::-1]  # any order: the evaluator restores it from the indices

    metrics, outputs = evaluator.evaluate(compute_metrics=True, score_fn=score_fn)
    assert metrics.result()[task.name] == {"accuracy": 100.0}  # sum: 3 of 3 right
    targets = list(evaluator.cached_task_datasets[task.name].as_numpy_iterator())
    cands = [rc.rank_classification_postprocessor(None, t, is_target=True) for t in targets]
    assert [(c.num_tokens, c.num_chars) for c in cands[3:5]] == [(6, 4), (7, 5)]  # " blue"+EOS
    scores = [loglik[t["targets_pretokenized"].decode()] for t in targets]
    # mean per token (bytes + EOS): " 2" -3/3 = -1.0 loses to " 11" -3.5/4 = -0.875;
    # " blue" -2/6 beats " green" -2.5/7; " 4" wins -> 2 of 3. Per character: " 2" -3/1 loses
    # to " 11" -3.5/2; " blue" -2/4 beats " green" -2.5/5 (a tie goes first); " 4" -> 2 of 3
    assert rc.rank_classification(cands, scores, "tokens") == {"accuracy": 66.6667}
    assert rc.rank_classification(cands, scores, "characters") == {"accuracy": 66.6667}
    assert [tuple(t["idx"]) for t in targets] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert np.sum([t["is_correct"] for t in targets]) == 3
