"""OPT vocabulary: exact ids against the fairseq/HF convention, TF paths, equality, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tensorflow as tf

from optiml.pipeline import vocab as vocab_lib

pytestmark = pytest.mark.data

HELLO = "Hello, my dog is cute"
HELLO_IDS = [31414, 6, 127, 2335, 16, 11962]  # OPT ids; with BOS: [2] + HELLO_IDS (HF OPT)


@pytest.fixture(scope="module")
def vocab(data_dir):
    return vocab_lib.OPTVocabulary(data_dir / "gpt2_bpe")


def test_specials_and_size(vocab):
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (1, 2, 2, 3)
    assert vocab.vocab_size == 50272


def test_hello_ids_match_opt(vocab):
    assert [vocab.bos_id] + list(vocab.encode(HELLO)) == [2, 31414, 6, 127, 2335, 16, 11962]
    assert vocab.decode(HELLO_IDS) == HELLO
    # decoding stops at EOS (seqio convention) and drops specials
    assert vocab.decode(HELLO_IDS + [2, 31414]) == HELLO
    assert vocab.decode([1, 0, 3] + HELLO_IDS) == HELLO


def test_leading_space_and_unicode_round_trip(vocab):
    for text in [" Answer: yes", "naïve café — 東京\n\ttabs", "   ", ""]:
        assert vocab.decode(vocab.encode(text)) == text
    # a leading space is its own BPE choice: " yes" != "yes"
    assert vocab.encode(" yes") != vocab.encode("yes")
    assert vocab.encode_batch(["a b", HELLO]) == [vocab.encode("a b"), HELLO_IDS]


def test_tf_encode_and_decode(vocab):
    ids = vocab.encode_tf(tf.constant(HELLO))
    assert ids.dtype == tf.int32 and ids.numpy().tolist() == HELLO_IDS
    batch = tf.constant([HELLO_IDS, HELLO_IDS[:2] + [2, 1, 1, 1]], tf.int32)
    out = vocab.decode_tf(batch).numpy().tolist()
    assert out == [HELLO.encode(), b"Hello,"]

    ds = tf.data.Dataset.from_tensor_slices([HELLO, "dog"]).map(vocab.encode_tf)
    assert [x.tolist() for x in ds.as_numpy_iterator()] == [HELLO_IDS, vocab.encode("dog")]


def test_equality_hash_and_pickle(vocab, data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    default = vocab_lib.OPTVocabulary()
    assert default == vocab and hash(default) == hash(vocab)
    assert vocab != vocab_lib.byte_vocabulary()
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and clone.encode(HELLO) == HELLO_IDS


def test_construction_reads_nothing(tmp_path):
    lazy = vocab_lib.OPTVocabulary(tmp_path / "nowhere")  # no error until first use
    with pytest.raises(FileNotFoundError, match="nowhere lacks encoder.json"):
        lazy.encode("x")


def test_byte_vocabulary_for_tiny_tests():
    byte = vocab_lib.byte_vocabulary()
    assert byte.vocab_size == 259
    assert byte.decode(np.asarray(byte.encode("hi"))) == "hi"
