"""Command-line tools (each `python -m optiml.tools.NAME` or `optiml NAME`): `inspect` (with its
library `inspection`), `table`, `rates`, `leakage`, `download`, `memory`.
"""
