"""Loader modules of the OPT-IML Bench sources, one per benchmark (`niv2.py`, `promptsource.py`,
...), and `common.py`: what they share (the rendered Example, delimiters, the lazy seqio source).
"""
