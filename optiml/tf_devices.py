"""TensorFlow runs optiml's data pipeline (seqio) and clu's TensorBoard writer, on the CPU only.

`quiet_tensorflow()` before the first `import tensorflow` silences its C++ logging;
`hide_gpus_from_tensorflow()` after it keeps TF off every GPU, so it never claims accelerator
memory that JAX needs (T5X's main does the same). TF-free: a no-op while TF is not imported.
"""

from __future__ import annotations

import os
import sys


def quiet_tensorflow() -> None:
    """TF_CPP_MIN_LOG_LEVEL=3 unless the user set it (read when TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def hide_gpus_from_tensorflow() -> None:
    """Make every GPU invisible to an already imported TensorFlow (no-op if not imported)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.config.set_visible_devices([], "GPU")
