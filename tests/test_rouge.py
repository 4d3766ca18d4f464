"""ROUGE-1, ROUGE-L F1 and exact match equal the official SNI formula on hand-checked pairs.

Every expected value below is worked out by hand in the comment beside it: tokens, LCS, P, R, F.
"""

from __future__ import annotations

import json

import pytest

from optiml.evaluation import rouge


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # stemmed tokens [the cat are run] vs [the cat run]: LCS 3, P 3/4, R 1 -> F 6/7
        ("The cats are running.", "the cat runs", 6 / 7),
        # punctuation and case vanish in the default tokenizer: [yes] vs [yes]
        ("Yes!", "yes", 1.0),
        ("  YES ", "yes.", 1.0),
        # word order: [b a] vs [a b]: LCS 1, P = R = 1/2
        ("b a", "a b", 0.5),
        # "was" (3 chars) is not stemmed, "cats" is: [cat was here] vs [cat wa]: LCS 1 -> 2/5
        ("cat was here", "cats wa", 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)),
        # empty strings score 0, including empty vs empty
        ("", "something", 0.0),
        ("something", "", 0.0),
        ("", "", 0.0),
        # non-ASCII letters become spaces in the default tokenizer: [le caf] vs [le caf]
        ("Le café", "le café", 1.0),
        # Chinese has no [a-z0-9] token at all with the default tokenizer
        ("北京", "北京是中国的首都", 0.0),
    ],
)
def test_english_rouge_hand_checked(prediction: str, reference: str, expected: float) -> None:
    assert rouge.rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # stemmed unigrams [the cat are run] vs [the cat run]: 3 shared, P 3/4, R 1 -> F 6/7
        ("The cats are running.", "the cat runs", 6 / 7),
        # order does not matter: [b a] vs [a b] -> 1 (ROUGE-L: 1/2)
        ("b a", "a b", 1.0),
        # counts are clipped: [a a b] vs [a b b c]: a 1 + b 1 = 2 shared, P 2/3, R 2/4 -> 4/7
        ("a a b", "a b b c", 2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)),
        ("", "something", 0.0),
        ("Le café", "le café", 1.0),  # [le caf] both
    ],
)
def test_english_rouge1_hand_checked(prediction: str, reference: str, expected: float) -> None:
    assert rouge.rouge_1(prediction, reference) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The Cat!", "the  cat", 1.0),  # lower-case, punctuation dropped, spaces collapsed
        ("the cat", "a cat", 0.0),  # articles are NOT removed (unlike SQuAD)
        ("", "", 1.0),
        ("", ".", 1.0),  # "." normalizes to ""
        ("café", "Café", 1.0),
        ("cafe", "café", 0.0),  # accents are kept
    ],
)
def test_exact_match_hand_checked(prediction: str, reference: str, expected: float) -> None:
    assert rouge.exact_match(prediction, reference) == expected


def test_normalize_answer() -> None:
    assert rouge.normalize_answer(" A, b!  C\n") == "a b c"
    assert rouge.normalize_answer("«Quote»") == "«quote»"  # only ASCII punctuation goes


@pytest.mark.data
def test_xlingual_tokens_and_scores(data_dir) -> None:
    tok = rouge.GPT2Tokenizer(data_dir / "gpt2_bpe")
    assert tok.tokenize("Le café") == ["Le", "cafÃ©"]
    # byte-level: case matters, accents are byte symbols: [Le cafÃ©] vs [le cafÃ©]: LCS 1 -> 1/2
    assert rouge.rouge_l("Le café", "le café", xlingual=True) == pytest.approx(0.5)
    # "北京" is the first 4 of the 14 byte-level tokens of the reference: P 1, R 4/14 -> 8/18
    ref = "北京是中国的首都"
    assert tok.tokenize("北京") == tok.tokenize(ref)[:4]
    assert len(tok.tokenize(ref)) == 14
    assert rouge.rouge_l("北京", ref, xlingual=True) == pytest.approx(8 / 18)
    assert rouge.rouge_l("", ref, xlingual=True) == 0.0
    # punctuation is a token in the xlingual track: [Hi ,] vs [Hi]: P 1/2, R 1 -> 2/3
    assert rouge.rouge_l("Hi,", "Hi", xlingual=True) == pytest.approx(2 / 3)
    # ROUGE-1 on the same tokens: [world hello] vs [hello world] share both unigrams; case
    # matters: [Le cafÃ©] vs [le cafÃ©] share 1 of 2 -> 1/2
    assert rouge.rouge_1("world hello", "hello world", xlingual=True) == 1.0
    assert rouge.rouge_l("world hello", "hello world", xlingual=True) == pytest.approx(0.5)
    assert rouge.rouge_1("Le café", "le café", xlingual=True) == pytest.approx(0.5)


@pytest.mark.data
def test_xlingual_tokenizer_equals_huggingface_gpt2(data_dir) -> None:
    """The official script uses AutoTokenizer("gpt2").tokenize + lstrip("Ġ"); same files here."""
    from transformers import GPT2Tokenizer

    bpe = data_dir / "gpt2_bpe"
    vocab = json.loads((bpe / "encoder.json").read_text())
    merges = [tuple(line.split()) for line in (bpe / "vocab.bpe").read_text().splitlines()[1:]]
    hf = GPT2Tokenizer(vocab=vocab, merges=[m for m in merges if m])
    ours = rouge.GPT2Tokenizer(bpe)
    for text in [
        "Hello world",
        "Le café est très bon.",
        "  two  spaces<|endoftext|>x",
        "Привет, мир!",
        "北京是中国的首都",
        "",
        "don't 123",
    ]:
        assert ours.raw_tokens(text) == hf.tokenize(text), text
        assert ours.tokenize(text) == [t.lstrip("Ġ") for t in hf.tokenize(text)]


def test_max_over_references_and_corpus_scores() -> None:
    # best of [0.0, 1.0]
    assert rouge.max_over_references(rouge.rouge_l, "a b", ["c", "a b"]) == 1.0
    scores = rouge.corpus_scores(["a", "", "x y"], [["A!"], [""], ["x", "z"]])
    # EM: 1 + 1 + 0 = 2/3; ROUGE-1 = ROUGE-L: 1 + 0 + F([x y] vs [x]) = 2/3 -> (1 + 2/3) / 3
    rouge_mean = round(100 * (5 / 3) / 3, 4)
    assert scores == {"exact_match": 66.6667, "rouge1": rouge_mean, "rougeL": rouge_mean}
    with pytest.raises(ValueError, match="no reference"):
        rouge.max_over_references(rouge.rouge_l, "a", [])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge.corpus_scores(["a", "b"], [["a"]])
