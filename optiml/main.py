"""optiml's entry point, T5X style: gin chooses the function to run and all of its arguments.

    python -m optiml.main --gin_file=runs/quickstart.gin \
        --gin.MODEL_DIR="'/tmp/run'" --gin.trainer.train.steps=20 --gin_search_paths=my/configs
    optiml --gin_file=...            # the same, as a console script
    optiml inspect tasks --benchmark niv2   # `optiml TOOL ...` runs one of the tools in TOOLS

- `--gin_file` (repeatable) names gin files, absolute or relative to the working directory, an
  entry of `--gin_search_paths` or optiml's own `gin/` folder (searched in that order; gin's
  `include` searches the same folders, the working directory last).
- `--gin.KEY=VALUE` (repeatable, later wins) becomes the gin binding `KEY = VALUE`. KEY is either
  `module.function.param` or the name of a macro that the gin files define (e.g. MODEL_DIR).
- The gin files bind the macro `RUN` to the function to call, e.g. `RUN = @trainer.train`.
- The run directory is the `MODEL_DIR` macro; the config is written there as `config.gin`
  (the full parsed config when the run starts, replaced by gin's operative config when it ends).

Configuration errors (unknown binding or macro, malformed value, missing file, a REQUIRED macro
left unset, a value of the wrong type or out of range, a mesh that does not fit the devices: see
`optiml.validation`) stop the program before anything runs, with one line that names the culprit
and exit code 2.
This module is the only place in optiml that imports gin's decorators: library code is gin-free.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from optiml import cli, gin_check, paths, quiet, validation
from optiml.cli import ConfigError

USAGE = (
    "usage: optiml --gin_file=FILE.gin [--gin_file=...] [--gin.KEY=VALUE ...] "
    "[--gin_search_paths=DIR[,DIR...]] [--verbose]"
)
_MACRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_args(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Splits argv into (gin files, gin bindings, search paths). Unknown flags raise ConfigError."""
    files: list[str] = []
    bindings: list[str] = []
    search_paths: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, has_value, value = arg.partition("=")
        if not has_value and name in ("--gin_file", "--gin_search_paths") and i + 1 < len(args):
            value, i = args[i + 1], i + 1
            has_value = True
        if name == "--gin_file" and has_value:
            files.append(value)
        elif name == "--gin_search_paths" and has_value:
            search_paths.extend(p for p in value.split(",") if p)
        elif name.startswith("--gin.") and has_value and len(name) > len("--gin."):
            bindings.append(f"{name[len('--gin.') :]} = {value}")
        elif name in ("-h", "--help"):
            raise ConfigError(USAGE)
        else:
            raise ConfigError(f"unknown or malformed argument {arg!r}; {USAGE}")
        i += 1
    return files, bindings, search_paths


def _resolve_file(name: str, search_paths: Sequence[str]) -> str:
    candidates = (
        [Path(name)] if Path(name).is_absolute() else [Path(p) / name for p in search_paths]
    )
    for candidate in candidates:
        if candidate.is_file():
            return os.path.abspath(candidate)
    raise ConfigError(f"gin file {name!r} not found (searched: {', '.join(search_paths)})")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _bindings(gin: Any) -> list[Any]:
    """Every binding of the parsed config as gin `BindingStatement`s (selector, arg_name, value),
    through gin's public API: the config `gin.config_str()` prints, read back by gin's parser.
    A macro `NAME = value` is a statement with selector NAME and no arg_name."""
    from gin import config_parser

    delegate = gin.config.ParserDelegate(skip_unknown=True)
    parsed = config_parser.ConfigParser(gin.config_str(), delegate)
    return [s for s in parsed if isinstance(s, config_parser.BindingStatement)]


def _defined_macros(gin: Any) -> dict[str, Any]:
    """Macro name -> bound value (`%NAME` references and `@fn` references as gin objects)."""
    return {s.selector: s.value for s in _bindings(gin) if not s.arg_name}


def _macro_references(value: Any) -> list[str]:
    """Names of the macros that a bound value refers to (`%NAME`), searched recursively."""
    if isinstance(value, list | tuple | set):
        return [name for item in value for name in _macro_references(item)]
    if isinstance(value, dict):
        return [name for item in value.values() for name in _macro_references(item)]
    selector = getattr(value, "scoped_selector", "")  # gin.config.ConfigurableReference
    if isinstance(selector, str) and selector.endswith("/gin.macro"):
        return [selector[: -len("/gin.macro")]]
    return []


@contextlib.contextmanager
def _gin_search(gin: Any, folders: Sequence[str]) -> Iterator[None]:
    """While parsing, gin's `include` looks for plain files in exactly `folders`, in order.

    gin's own lookup first tries the working directory and then reads `runs/finetune.gin` as
    the file `finetune.gin` of a Python package `runs` (gin.resource_reader); once the working
    directory holds a `runs/` folder (every run writes one), `python -m` has put it on sys.path
    as a namespace package without a file and the include fails with a TypeError. gin 0.5 has
    no public way to set its search list, hence its two module lists are swapped here."""
    config = gin.config
    saved = list(config._LOCATION_PREFIXES), list(config._FILE_READERS)
    config._LOCATION_PREFIXES[:] = [os.path.abspath(p) for p in folders]
    config._FILE_READERS[:] = [(open, os.path.isfile)]
    try:
        yield
    finally:
        config._LOCATION_PREFIXES[:], config._FILE_READERS[:] = saved


def parse_config(files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str]):
    """Parses gin files and bindings, validating each; returns (the function bound to RUN, the
    MODEL_DIR macro's value or None)."""
    import gin

    # Includes: user paths first, then optiml's own configs, then the working directory.
    folders = [*search_paths, str(paths.gin_dir()), os.getcwd()]
    resolved = [_resolve_file(f, [os.getcwd(), *folders[:-1]]) for f in files]

    gin.clear_config(clear_constants=True)
    with gin.unlock_config(), _gin_search(gin, folders):
        for file in resolved:
            try:
                gin.parse_config_file(file)
            except Exception as e:  # gin raises many types; report the file and the first line
                raise ConfigError(f"gin file {file}: {_first_line(e)}") from e
        macros = _defined_macros(gin)
        for binding in bindings:
            key = binding.split("=", 1)[0].strip()
            if _MACRO_NAME.match(key) and key not in macros:
                known = ", ".join(sorted(macros)) or "none"
                raise ConfigError(
                    f"--gin.{key}: no gin file defines a macro named {key} "
                    f"(defined macros: {known}); bind `module.function.param` or a known macro"
                )
            try:
                gin.parse_config(binding)
            except Exception as e:
                raise ConfigError(
                    f"--gin.{binding.replace(' = ', '=', 1)}: {_first_line(e)}"
                ) from e

    bindings = _bindings(gin)
    macros = {s.selector: s.value for s in bindings if not s.arg_name}
    for s in bindings:
        for name in _macro_references(s.value):
            if name not in macros:
                where = f"{s.selector}.{s.arg_name}" if s.arg_name else s.selector
                raise ConfigError(f"{where} refers to %{name}, a macro that nothing defines")
    missing = sorted(
        name
        for name, value in macros.items()
        if value is gin.REQUIRED
        or getattr(value, "scoped_selector", "") == "gin.REQUIRED/gin.constant"
    )
    if missing:
        flags = " ".join(f"--gin.{name}=..." for name in missing)
        raise ConfigError(f"required gin macro(s) not set: {', '.join(missing)} (pass {flags})")
    if "RUN" not in macros:
        raise ConfigError(
            "no function to run: the gin files must bind the macro RUN, e.g. "
            "`RUN = @trainer.train` (see gin/runs/)"
        )
    run = macros["RUN"]
    function = getattr(run, "scoped_configurable_fn", None)
    if function is None:
        raise ConfigError(
            f"RUN must be a reference to a function, like @trainer.train; got {run!r}"
        )
    return function, macros.get("MODEL_DIR")


def _write_config(model_dir: Any, text: str) -> list[Path]:
    """Writes MODEL_DIR/config.gin; returns what did not exist before (folders outermost first,
    then the file)."""
    if not isinstance(model_dir, str | os.PathLike):
        return []
    path = Path(model_dir)
    config = path / "config.gin"
    created = [p for p in (*reversed(path.parents), path, config) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return created


def _remove(created: Sequence[Path]) -> None:
    """Undoes `_write_config`: the file, then each folder it made if nothing else is inside."""
    for path in reversed(created):
        if path.is_file():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def main(argv: Sequence[str]) -> Any:
    """Parses the command line and gin config, then calls the RUN function (returns its result).
    A run stopped by a DataDirError (no data: it never started) leaves nothing behind."""
    import gin

    files, bindings, search_paths = parse_args(argv)
    if not files and not bindings:
        raise ConfigError(f"no gin file given; {USAGE} (optiml --help lists the tools)")
    function, model_dir = parse_config(files, bindings, search_paths)
    try:
        gin_check.check_gin_config()  # types, ranges, names, mesh: before anything runs
    except validation.SettingError as e:
        raise ConfigError(str(e)) from None
    quiet.hide_gpus_from_tensorflow()
    created: list[Path] | None = _write_config(model_dir, gin.config_str())
    try:
        with gin.config_scope(None):
            return function()
    except paths.DataDirError:
        _remove(created)
        created = None
        raise
    finally:
        quiet.hide_gpus_from_tensorflow()
        try:
            operative = gin.operative_config_str() if created is not None else ""
        except Exception:  # a failed call can leave gin unable to print; keep the full config
            operative = ""
        if operative.strip():
            _write_config(model_dir, operative)


class Tool(NamedTuple):
    module: str  # its `main(argv)` runs the tool
    summary: str  # one line for `optiml --help`


# `optiml TOOL ...` runs one of optiml's command-line tools; anything else is a gin run.
TOOLS = {
    "inspect": Tool("optiml.tools.inspect", "tasks, categories, mixtures and rendered examples"),
    "convert": Tool("optiml.models.convert", "checkpoints in and out: Hugging Face, metaseq"),
    "prepare": Tool("optiml.pipeline.prepare", "tokenize a mixture once into the token cache"),
    "rates": Tool("optiml.tools.rates", "a mixture's effective rates and epochs per task"),
    "download": Tool("optiml.tools.download", "fetch missing Super-NaturalInstructions tasks"),
    "leakage": Tool("optiml.tools.leakage", "13-gram overlap of training and evaluation tasks"),
    "table": Tool("optiml.tools.table", "the benchmark's table next to the paper's Table 1"),
    "compare": Tool("optiml.evaluation.compare", "two generalization reports side by side"),
    "memory": Tool("optiml.tools.memory", "per-device memory to fine-tune a model on a mesh"),
    "sweep": Tool("optiml.sweep", "the paper's section 4 ablations: train, evaluate, one table"),
    "lm-eval": Tool("optiml.evaluation.harness", "lm-eval's command line with an optiml model"),
    "prompts": Tool("optiml.evaluation.prompt_selection", "rank templates by prompt perplexity"),
}
HELP = f"""{USAGE}
       optiml TOOL [ARGS ...]    (`optiml TOOL --help` shows a tool's options)

A gin run calls the function that its gin files bind to RUN; the main job:
  optiml --gin_file=runs/quickstart.gin --gin.MODEL_DIR="'runs/quickstart'"
Gin files are looked up in the working directory, --gin_search_paths and optiml's gin/ folder.

tools:
{chr(10).join(f"  {name:<9} {tool.summary}" for name, tool in TOOLS.items())}

every command: --verbose shows every log line (TensorFlow's too); the data folder is
${paths.DATA_DIR_ENV}; a bad configuration or data folder stops with one line and exit status 2,
a fault the run detects (a lost save, a damaged cache) with one line and exit status 1.
"""


def console_main(argv: Sequence[str] | None = None) -> NoReturn:
    """`optiml` (and `python -m optiml.main`): `optiml --gin_file=...` or `optiml TOOL ARGS`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        cli.run(importlib.import_module(TOOLS[args[0]].module).main, args[1:])
    if "-h" in args or "--help" in args:
        print(HELP, end="")
        sys.exit(0)
    cli.run(main, args)


if __name__ == "__main__":
    console_main()
