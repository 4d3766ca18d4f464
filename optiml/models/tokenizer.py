"""OPT's tokenizer without TensorFlow: GPT-2 byte-level BPE whose vocabulary holds OPT's ids.

OPT ids: `<s>`=0, `<pad>`=1, `</s>`=2 (EOS, and the BOS OPT puts before every text), `<unk>`=3,
then fairseq's dict.txt order: line i (a GPT-2 id, or a `madeupwordNNNN` filler) is OPT id 4 + i,
up to the 50272 rows of OPT's embedding.

    >>> tok = OPTTokenizer.from_folder()          # $OPTIML_DATA_DIR/gpt2_bpe
    >>> tok.encode("Hello, my dog is cute")       # no BOS: callers put 2 in front
    [31414, 6, 127, 2335, 16, 11962]
    >>> tok.decode([2, 31414, 6])                  # special ids (0-3) are skipped
    'Hello,'

Two sources, found by `from_folder`: an HF OPT folder's `vocab.json` + `merges.txt` (ids already
OPT's, as in facebook/opt-*), or the GPT-2 files `encoder.json` + `vocab.bpe` + `dict.txt`
(remapped). `save_hf(folder)` writes the HF form, so transformers' `AutoTokenizer` reads the same
tokenizer (and, like facebook/opt-*, prepends `</s>`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from optiml import paths
from optiml.token_ids import NAMES, NUM_SPECIAL, VOCAB_SIZE

SPECIALS = {name: i for i, name in NAMES.items()}  # {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
HF_FILES = ("vocab.json", "merges.txt")
GPT2_FILES = ("encoder.json", "vocab.bpe", "dict.txt")
# facebook/opt-*'s tokenizer settings: `</s>` is BOS, EOS and UNK.
HF_TOKENIZER_CONFIG = {
    "tokenizer_class": "GPT2Tokenizer",
    "add_bos_token": True,
    "add_prefix_space": False,
    "bos_token": "</s>",
    "eos_token": "</s>",
    "unk_token": "</s>",
    "pad_token": "<pad>",
    "errors": "replace",
    "model_max_length": 1000000000000000019884624838656,
}


def opt_vocab_from_gpt2(folder: Path) -> dict[str, int]:
    """{token: OPT id} from GPT-2's encoder.json (token -> GPT-2 id) and fairseq's dict.txt."""
    gpt2_token = {i: t for t, i in json.loads((folder / "encoder.json").read_text()).items()}
    vocab = dict(SPECIALS)
    lines = (folder / "dict.txt").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines[: VOCAB_SIZE - NUM_SPECIAL]):
        symbol = line.split(" ", 1)[0]
        token = gpt2_token.get(int(symbol)) if symbol.isdigit() else symbol
        if token is None:
            raise ValueError(f"{folder}/dict.txt line {index + 1}: GPT-2 id {symbol} is unknown")
        vocab[token] = NUM_SPECIAL + index
    if len(vocab) - NUM_SPECIAL < len(gpt2_token):
        raise ValueError(f"{folder}/dict.txt does not cover GPT-2's {len(gpt2_token)} tokens")
    return vocab


def _read_merges(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]


class OPTTokenizer:
    """Text <-> OPT ids (no BOS added: `encode` returns the text's own tokens)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = vocab
        self.merges = merges
        self._tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tokenizer.decoder = decoders.ByteLevel()

    @classmethod
    def from_folder(cls, folder: str | Path | None = None) -> OPTTokenizer:
        """From `folder`'s HF files (vocab.json + merges.txt) or GPT-2 files (encoder.json +
        vocab.bpe + dict.txt); default $OPTIML_DATA_DIR/gpt2_bpe."""
        folder = Path(folder) if folder is not None else paths.data_dir() / "gpt2_bpe"
        if all((folder / f).is_file() for f in HF_FILES):
            vocab = json.loads((folder / "vocab.json").read_text())
            return cls(vocab, _read_merges(folder / "merges.txt"))
        if all((folder / f).is_file() for f in GPT2_FILES):
            return cls(opt_vocab_from_gpt2(folder), _read_merges(folder / "vocab.bpe"))
        raise FileNotFoundError(
            f"{folder}: no OPT tokenizer files ({' + '.join(HF_FILES)}, or "
            f"{' + '.join(GPT2_FILES)})"
        )

    @staticmethod
    def has_files(folder: str | Path) -> bool:
        folder = Path(folder)
        return any(all((folder / f).is_file() for f in files) for files in (HF_FILES, GPT2_FILES))

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Many strings at once (Rust-parallel); the same ids as `encode` on each. The `_fast`
        variant skips the character offsets, which nothing here reads."""
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids) -> str:
        """OPT ids -> text; special ids (0-3) and ids outside the vocabulary are skipped."""
        keep = [int(i) for i in ids if NUM_SPECIAL <= int(i) < self._tokenizer.get_vocab_size()]
        return self._tokenizer.decode(keep, skip_special_tokens=False)

    def save_hf(self, folder: str | Path) -> Path:
        """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json as in
        facebook/opt-*, for transformers' AutoTokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False))
        merges = ["#version: 0.2"] + [" ".join(m) for m in self.merges]
        (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
        added = {
            str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                     "normalized": True, "single_word": False}
            for t, i in SPECIALS.items()
        }  # fmt: skip
        config = {**HF_TOKENIZER_CONFIG, "added_tokens_decoder": added}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        special = {k: v for k, v in HF_TOKENIZER_CONFIG.items() if k.endswith("_token")}
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        return folder
