"""The OPT vocabulary as a `seqio.Vocabulary`: GPT-2 byte-level BPE with OPT's ids.

Files (in `$OPTIML_DATA_DIR/gpt2_bpe` unless a directory is given): `encoder.json` (GPT-2 token ->
GPT-2 id), `vocab.bpe` (merges) and fairseq's `dict.txt` (line i holds a GPT-2 id; its OPT id is
4 + i). OPT ids: `<s>`=0, `<pad>`=1, `</s>`=2 (EOS, also used as BOS), `<unk>`=3; 50272 entries
(`optiml.token_ids`).

    >>> vocab = OPTVocabulary()
    >>> vocab.encode("Hello, my dog is cute")
    [31414, 6, 127, 2335, 16, 11962]          # with BOS: [2, 31414, 6, 127, 2335, 16, 11962]

Nothing is read at construction: the tokenizer loads on first use, so `import optiml.registry`
stays data-free. Equal vocabularies (same files) compare equal; instances pickle by path.
`byte_vocabulary()` gives seqio's 259-entry `ByteVocabulary` for tiny tests.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import seqio
import tensorflow as tf

from optiml import paths
from optiml.models.tokenizer import OPTTokenizer
from optiml.token_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID, VOCAB_SIZE

FILES = ("encoder.json", "vocab.bpe", "dict.txt")


class OPTVocabulary(seqio.Vocabulary):
    """GPT-2 byte-level BPE remapped to OPT ids through fairseq's dict.txt: seqio's face of the
    TF-free `optiml.models.tokenizer.OPTTokenizer` (fillers `madeupwordNNNN` decode as text)."""

    def __init__(self, directory: str | Path | None = None):
        super().__init__(extra_ids=0)
        self._directory = None if directory is None else str(directory)
        self._lock = threading.Lock()
        self._tokenizer: OPTTokenizer | None = None

    # -- loading ---------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The folder holding encoder.json, vocab.bpe and dict.txt (resolved when first asked)."""
        if self._directory is None:
            return paths.data_dir() / "gpt2_bpe"
        return Path(self._directory).expanduser().resolve()

    def _load(self) -> OPTTokenizer:
        with self._lock:
            if self._tokenizer is None:
                folder = self.directory
                missing = [f for f in FILES if not (folder / f).is_file()]
                if missing:
                    raise FileNotFoundError(f"OPT vocabulary: {folder} lacks {', '.join(missing)}")
                self._tokenizer = OPTTokenizer.from_folder(folder)
            return self._tokenizer

    # -- seqio.Vocabulary ------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def _base_vocab_size(self) -> int:
        return VOCAB_SIZE

    def _encode(self, s: str) -> list[int]:
        return self._load().encode(s)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many strings at once (Rust-parallel); same ids as `encode` on each."""
        return self._load().encode_batch(texts)

    def _decode(self, ids) -> str:
        """OPT ids -> text; specials (0-3) and ids outside the vocabulary are dropped."""
        return self._load().decode(np.asarray(ids, np.int64).reshape(-1).tolist())

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        def encode(text: np.ndarray | bytes) -> np.ndarray:  # bytes in graph mode
            return np.asarray(self._encode(np.asarray(text).item().decode("utf-8")), np.int32)

        ids = tf.numpy_function(encode, [s], tf.int32, stateful=False)
        ids.set_shape([None])
        return ids

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        def decode(array: np.ndarray) -> np.ndarray:
            flat = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
            out = [self._decode(row).encode("utf-8") for row in flat]
            return np.asarray(out, dtype=object).reshape(array.shape[:-1])

        text = tf.numpy_function(decode, [ids], tf.string, stateful=False)
        text.set_shape(ids.shape[:-1])
        return text

    # -- identity and pickling -------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OPTVocabulary):
            return False
        return self._directory == other._directory or self.directory == other.directory

    def __hash__(self) -> int:
        return hash("OPTVocabulary")  # equal vocabularies may name their folder differently

    def __getstate__(self) -> dict:
        return {"directory": self._directory}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"])

    def __repr__(self) -> str:
        where = self._directory or f"${paths.DATA_DIR_ENV}/gpt2_bpe"
        return f"OPTVocabulary({where!r})"


def byte_vocabulary() -> seqio.ByteVocabulary:
    """seqio's UTF-8 byte vocabulary (pad 0, eos 1, unk 2, 259 ids): for tiny tests."""
    return seqio.ByteVocabulary()


_DEFAULT: OPTVocabulary | None = None


def opt_vocabulary() -> OPTVocabulary:
    """The shared default OPT vocabulary (files from $OPTIML_DATA_DIR/gpt2_bpe, read lazily)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = OPTVocabulary()
    return _DEFAULT
