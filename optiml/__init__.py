"""optiml: OPT-IML instruction meta-learning for OPT decoders in JAX.

Importing this package is cheap and never imports TensorFlow: the model, partitioning and
checkpoint-conversion modules are TF-free; only `optiml.bench` loaders, `optiml.pipeline`,
`optiml.registry` and `optiml.evaluation` (which use seqio) pull TensorFlow in.

To register the benchmark's seqio tasks and mixtures: `import optiml.registry`.
"""

__version__ = "0.1.0"
