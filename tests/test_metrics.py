"""seqio metric functions: accuracy, exact match, ROUGE-1/ROUGE-L (x100), the target
postprocessor."""

from __future__ import annotations

import numpy as np
import pytest

from optiml.evaluation import metrics


def test_accuracy() -> None:
    assert metrics.accuracy(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == {"accuracy": 50.0}
    assert metrics.accuracy([1, 2, 3], [1, 2, 0]) == {"accuracy": 66.6667}
    assert metrics.accuracy([["a", "b"]], ["b"]) == {"accuracy": 100.0}  # any reference


def test_exact_match_uses_sni_normalization() -> None:
    assert metrics.exact_match([["Yes", "yes."], "No"], ["YES!", "no way"]) == {"exact_match": 50.0}
    assert metrics.exact_match([b"The answer"], ["the answer."]) == {"exact_match": 100.0}


def test_rouge_corpus_mean_x100() -> None:
    # ROUGE-L per example 6/7 (stemmed), 1.0, 0.0 and 1/3 ([z y x] vs [x y z]: LCS 1);
    # ROUGE-1 the same but the last: all three unigrams shared -> 1.0
    result = metrics.rouge(
        ["the cat runs", ["nope", "Yes"], "abc", "x y z"],
        ["The cats are running.", "yes", "", "z y x"],
    )
    assert result == {
        "rouge1": round(100 * (6 / 7 + 1.0 + 1.0) / 4, 4),
        "rougeL": round(100 * (6 / 7 + 1.0 + 1 / 3) / 4, 4),
    }


@pytest.mark.data
def test_rouge_xlingual(data_dir) -> None:
    assert metrics.rouge_xlingual(["le café"], ["Le café"]) == {"rouge1": 50.0, "rougeL": 50.0}


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        metrics.rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no examples"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="no reference"):
        metrics.exact_match([[]], ["a"])


def test_is_xlingual() -> None:
    assert not metrics.is_xlingual("English", ["English"])
    assert metrics.is_xlingual(["English"], ["Spanish"])
    assert metrics.is_xlingual("Chinese")


def test_references_postprocessor() -> None:
    example = {"references": np.array([b"Yes", b"yes indeed"], dtype=object)}
    assert metrics.references_postprocessor(b" Yes", example, is_target=True) == [
        "Yes",
        "yes indeed",
    ]
    assert metrics.references_postprocessor(b" Yes", {}, is_target=True) == "Yes"
    assert metrics.references_postprocessor(" no \n", None, is_target=False) == "no"
