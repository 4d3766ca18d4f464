"""Loader modules of the OPT-IML Bench sources other than NIV2 (one module per benchmark)."""
