"""The TF-free OPT tokenizer: the pipeline vocabulary's ids, and an HF folder that transformers'
AutoTokenizer reads as facebook/opt-*'s tokenizer (BOS 2 prepended, same ids and text)."""

from __future__ import annotations

import pytest

from optiml.models.tokenizer import OPTTokenizer

pytestmark = pytest.mark.data

TEXTS = [
    "Hello, my dog is cute",
    " yes",
    "Le café est très bon.\n\nQ: 北京?",
    "  two  spaces<|endoftext|>x",
    "",
]


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> OPTTokenizer:
    return OPTTokenizer.from_folder(data_dir / "gpt2_bpe")


def test_ids_and_decoding(tokenizer):
    assert tokenizer.encode("Hello, my dog is cute") == [31414, 6, 127, 2335, 16, 11962]
    assert tokenizer.encode_batch(TEXTS) == [tokenizer.encode(t) for t in TEXTS]
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode([0, 1, 2, 3, 31414, 6, 50272, 99999]) == "Hello,"  # specials skipped
    assert len(tokenizer.vocab) == 50272 and tokenizer.vocab["madeupword0000"] == 50261


def test_hf_folder_round_trip_and_transformers(tmp_path, tokenizer):
    import transformers

    tokenizer.save_hf(tmp_path)
    again = OPTTokenizer.from_folder(tmp_path)
    assert again.vocab == tokenizer.vocab and again.merges == tokenizer.merges
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (2, 2, 1)
    for text in TEXTS:
        assert hf(text)["input_ids"] == [2] + tokenizer.encode(text)
        ids = [2] + tokenizer.encode(text) + [50270, 1]
        assert hf.decode(ids, skip_special_tokens=True) == tokenizer.decode(ids)


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        OPTTokenizer.from_folder(tmp_path)
