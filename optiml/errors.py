"""What a run stops with on purpose: a fault it detected and states in one line.

`RunStopped` covers a checkpoint that could not be saved or restored, a damaged token cache and a
training mixture that lost too much of itself; `optiml.main` prints the message as one line and
exits 1 (configuration errors exit 2). Whatever was saved before the fault stays on disk.
"""

from __future__ import annotations


class RunStopped(RuntimeError):
    """The run stopped on a fault it detected; the message names it in one line."""
