"""The OPT-IML Bench definition: task names, the catalog read from `tasks/`, the generalization
levels, rate-capped mixtures, and one loader module per source in `sources/` (NIV2 included).

Importing this package is cheap: submodules are imported on demand, and only the loaders and
`optiml.registry` import seqio/TF.
"""
