"""optiml: OPT-IML instruction meta-learning for OPT decoders in JAX.

Importing this package is cheap and never imports TensorFlow: the model, partitioning and
checkpoint-conversion modules are TF-free; only `optiml.bench` loaders, `optiml.pipeline`,
`optiml.registry` and `optiml.evaluation` (which use seqio) pull TensorFlow in. Whoever imports
TensorFlow afterwards, it starts without its start-up lines and off the GPUs (`optiml.quiet`).

To register the benchmark's seqio tasks and mixtures: `import optiml.registry`.
"""

from optiml import quiet as _quiet

__version__ = "0.1.0"

_quiet.install()
