"""How every optiml command starts and ends, whether run as `optiml TOOL ...`, `optiml
--gin_file=...` or `python -m optiml.tools.rates ...` (each tool's `__main__` is `cli.run(main)`):

- Quiet by default (`optiml.quiet`): warnings, errors and the command's own lines only.
  `--verbose`, anywhere on the command line, shows every log line, TensorFlow's included.
- A bad configuration or data folder is one line on stderr, `optiml: <what is wrong>`, and exit
  status 2: a `ConfigError` (command line, gin files) or a `paths.DataDirError`
  ($OPTIML_DATA_DIR unset, empty or not the data folder). A fault the run detects
  (`errors.RunStopped`: a lost save, a damaged cache) is one line too, and exit status 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from optiml import errors, paths, quiet

VERBOSE_FLAG = "--verbose"


class ConfigError(Exception):
    """A problem with the command line or the gin configuration; the message names it."""


USER_ERRORS = (ConfigError, paths.DataDirError)


def setup(verbose: bool) -> None:
    """Log lines of level WARNING and up (INFO and up with `verbose`), one line each."""
    quiet.set_verbose(verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> NoReturn:
    """Calls `main(args)` (argv without `--verbose`) and exits: with its return value if it is
    an int, else with its `exit_code` (0 if none); with 2 for a USER_ERRORS exception and 1 for
    a RunStopped, after its one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    setup(VERBOSE_FLAG in args)
    try:
        result = main([a for a in args if a != VERBOSE_FLAG])
    except (*USER_ERRORS, errors.RunStopped) as error:
        first = str(error).splitlines()[0]  # gin appends "In call to configurable ..." lines
        print(f"optiml: {first}", file=sys.stderr)
        sys.exit(1 if isinstance(error, errors.RunStopped) else 2)
    sys.exit(result if isinstance(result, int) else getattr(result, "exit_code", 0))
