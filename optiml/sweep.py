"""Sweeps: train and evaluate variants of one config, then one comparison table (paper §4).

    python -m optiml.sweep experiments/ablations/eps_cap.gin [--sweep_dir=DIR]
        [--base=FILE[,FILE...]] [--gin.KEY=VALUE ...] [--gin_search_paths=DIR[,DIR...]]
    optiml sweep experiments/ablations/eps_cap.gin        # the same

A sweep file is a gin file that binds `sweep.Sweep` (see gin/experiments/ablations/):

    from __gin__ import dynamic_registration
    from optiml import sweep
    sweep.Sweep.base = ['experiments/ablations/presets/cpu.gin']   # gin files of every variant
    sweep.Sweep.common = []                                        # bindings of every variant
    sweep.Sweep.variants = {'eps_128': ['mixing.MixingConfig.eps = 128'],
                            'eps_4096': ['mixing.MixingConfig.eps = 4096']}

Each variant is one `python -m optiml.main` process (`RUN` of the base files trains, then
evaluates on the dev level) with the base files, then `common`, `--gin.` bindings of the
command line and its own bindings, and `MODEL_DIR = <sweep_dir>/<variant>`. `--base` replaces
the base files (e.g. by the paper-scale preset). The run's report (`<variant>/report.json`,
the paper's aggregation, §4.1) becomes one row of `<sweep_dir>/sweep.{md,json,png}`: rows =
variants, columns = each level's combined and k-shot means, then each level/benchmark k-shot
mean; then, per paper table that `tasks/paper/sweep_map.tsv` maps the file's variants to (e.g.
eps_cap.gin -> Table 4), the paper's value beside ours for every cell measured, with protocol
marks (`optiml.evaluation.paper_ablations`).

Resume: a variant whose report exists and whose config fingerprint (sha256 of gin's parsed
config, the run directory left out) is the one in `<variant>/sweep_fingerprint.txt` is not run
again; an unfinished one resumes from its checkpoints. A variant directory written under another
config is moved aside to `<variant>.stale-<old fingerprint>`: a result is never reused for a
different config. A bad sweep file or binding: one line naming it, exit code 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optiml import main as main_lib
from optiml.evaluation import paper_ablations


class VariantError(Exception):
    """A variant's run failed; the finished variants are kept (a rerun resumes)."""


FINGERPRINT = "sweep_fingerprint.txt"
USAGE = (
    "usage: python -m optiml.sweep FILE.gin [--sweep_dir=DIR] [--base=FILE[,FILE...]] "
    "[--gin.KEY=VALUE ...] [--gin_search_paths=DIR[,DIR...]]"
)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The variants of a sweep file: name -> gin bindings (strings `KEY = VALUE`)."""

    variants: Mapping[str, Sequence[str]]
    base: Sequence[str] = ("experiments/ablations/presets/cpu.gin",)
    common: Sequence[str] = ()
    sweep_dir: str | None = None  # None: sweeps/<file stem> in the working directory
    title: str = ""

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("sweep.Sweep.variants is empty")
        for name, bindings in self.variants.items():
            if not name or not all(c.isalnum() or c in "._-" for c in name):
                raise ValueError(f"variant name {name!r}: use letters, digits, '.', '_', '-'")
            if isinstance(bindings, str):
                raise ValueError(f"variant {name!r}: bindings must be a list of strings")


def load_sweep(file: str, search_paths: Sequence[str] = ()) -> tuple[Sweep, Path]:
    """Parses a sweep file; returns the Sweep and the file's resolved path."""
    import gin
    from optiml.paths import gin_dir

    paths = [*search_paths, str(gin_dir())]
    path = Path(main_lib._resolve_file(file, [os.getcwd(), *paths]))
    gin.clear_config(clear_constants=True)
    for p in paths:
        gin.add_config_file_search_path(p)
    try:
        with gin.unlock_config():
            gin.parse_config_file(str(path))
        sweep = gin.get_configurable(Sweep)()
    except Exception as e:  # gin raises many types; name the file and the first line
        raise main_lib.ConfigError(f"sweep file {path}: {main_lib._first_line(e)}") from e
    finally:
        gin.clear_config(clear_constants=True)
    return sweep, path


def variant_args(
    sweep: Sweep, variant: str, model_dir: str, extra: Sequence[str], base: Sequence[str]
) -> list[str]:
    """The `optiml.main` command line of one variant."""
    bindings = [*sweep.common, *extra, *sweep.variants[variant], f"MODEL_DIR = {model_dir!r}"]
    args = [f"--gin_file={f}" for f in base]
    for binding in bindings:
        key, sep, value = binding.partition("=")
        if not sep:
            raise main_lib.ConfigError(f"variant {variant!r}: binding {binding!r} has no '='")
        args.append(f"--gin.{key.strip()}={value.strip()}")
    return args


def fingerprint(args: Sequence[str], search_paths: Sequence[str]) -> str:
    """sha256 of gin's parsed config for `args`, with MODEL_DIR replaced by a placeholder."""
    import gin

    placeholder = [a for a in args if not a.startswith("--gin.MODEL_DIR=")]
    placeholder.append("--gin.MODEL_DIR='<variant dir>'")
    files, bindings, _ = main_lib.parse_args(placeholder)
    main_lib.parse_config(files, bindings, search_paths)
    text = gin.config_str()
    gin.clear_config(clear_constants=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _variant_state(directory: Path, fp: str) -> str:
    """'done', 'resume' (same config, not finished) or 'new'; moves another config's dir aside."""
    if not directory.exists():
        return "new"
    recorded = directory / FINGERPRINT
    old = recorded.read_text().strip() if recorded.is_file() else "unknown"
    if old != fp:
        stale = directory.with_name(f"{directory.name}.stale-{old}")
        directory.rename(stale)
        print(f"[sweep] {directory.name}: written under another config, moved to {stale}")
        return "new"
    return "done" if (directory / "report.json").is_file() else "resume"


def _run_variant(variant: str, args: Sequence[str]) -> None:
    """One `python -m optiml.main` process per variant (fresh JAX and gin state each)."""
    code = subprocess.run([sys.executable, "-m", "optiml.main", *args]).returncode
    if code:
        raise VariantError(
            f"variant {variant!r} failed (exit code {code}); rerun the sweep to resume it"
        )


def run_sweep(
    file: str,
    *,
    sweep_dir: str | None = None,
    base: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    search_paths: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs every variant not finished yet, then writes and returns the comparison table."""
    from optiml.evaluation import report as report_lib

    sweep, path = load_sweep(file, search_paths)
    out = Path(sweep_dir or sweep.sweep_dir or Path("sweeps") / path.stem)
    out.mkdir(parents=True, exist_ok=True)
    base = list(base if base is not None else sweep.base)
    rows, reports = [], {}
    for i, variant in enumerate(sweep.variants):
        directory = out / variant
        args = variant_args(sweep, variant, str(directory), extra, base)
        fp = fingerprint(args, search_paths)
        state = _variant_state(directory, fp)
        print(f"[sweep] {i + 1}/{len(sweep.variants)} {variant}: {state} ({fp})", flush=True)
        if state != "done":
            directory.mkdir(parents=True, exist_ok=True)
            (directory / FINGERPRINT).write_text(fp + "\n")
            search = [f"--gin_search_paths={','.join(search_paths)}"] if search_paths else []
            _run_variant(variant, [*args, *search])
        report = reports[variant] = report_lib.load_report(directory)
        rows.append({"variant": variant, "bindings": list(sweep.variants[variant]),
                     "fingerprint": fp, "cells": aggregates(report)})  # fmt: skip
    table = {"sweep": sweep.title or path.stem, "file": str(path), "base": base,
             "common": [*sweep.common, *extra], "columns": _columns(rows),
             "rows": rows}  # fmt: skip
    dirs = {v: out / v for v in sweep.variants}
    table["paper"] = paper_ablations.compare(path.stem, reports, dirs)
    write_table(table, out)
    print(format_markdown(table), flush=True)
    return table


def aggregates(report: Mapping[str, Any]) -> dict[str, float]:
    """A report's columns: `<level> combined`, `<level> <k>-shot`, `<level>/<benchmark> <k>-shot`
    (level titles as in the paper, §4.1)."""
    from optiml.evaluation.report import LEVEL_TITLES

    cells = {}
    for level, data in report["levels"].items():
        title = LEVEL_TITLES[level]
        cells[f"{title} combined"] = data["combined"]
        for shots, value in data["shots"].items():
            cells[f"{title} {shots}-shot"] = value
    for level, data in report["levels"].items():
        for benchmark, row in data["benchmarks"].items():
            for shots, value in row.items():
                cells[f"{LEVEL_TITLES[level]}/{benchmark} {shots}-shot"] = value
    return cells


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row["cells"] if c not in columns]
    return columns


def format_markdown(table: Mapping[str, Any]) -> str:
    """Two markdown tables (levels, then level/benchmark), one row per variant."""
    lines = [f"# Sweep: {table['sweep']}", "", f"- file: {table['file']}",
             f"- base: {', '.join(table['base'])}"]  # fmt: skip
    if table["common"]:
        lines.append(f"- common bindings: {'; '.join(table['common'])}")
    for part in ([c for c in table["columns"] if "/" not in c],
                 [c for c in table["columns"] if "/" in c]):  # fmt: skip
        if not part:
            continue
        lines += ["", "| variant | " + " | ".join(part) + " |", "|---" * (len(part) + 1) + "|"]
        for row in table["rows"]:
            cells = [f"{row['cells'][c]:.1f}" if c in row["cells"] else "-" for c in part]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += ["", "| variant | bindings |", "|---|---|"]
    lines += [f"| {r['variant']} | {'; '.join(r['bindings'])} |" for r in table["rows"]]
    for section in table.get("paper", ()):
        lines += paper_ablations.format_markdown(section)
    return "\n".join(lines)


def plot_table(table: Mapping[str, Any], path: str | Path) -> None:
    """Grouped bars: the level columns (no benchmark ones), one bar per variant; then a panel per
    paper table compared (ours against the paper's value, `paper_ablations.plot`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in table["columns"] if "/" not in c]
    rows = table["rows"]
    sections = table.get("paper", [])
    width = max(6, 1.2 * len(columns) + 2)
    fig, axes = plt.subplots(1, 1 + len(sections), figsize=(width + 5 * len(sections), 4),
                             constrained_layout=True, squeeze=False)  # fmt: skip
    ax = axes[0][0]
    for panel, section in zip(axes[0][1:], sections, strict=True):
        paper_ablations.plot(panel, section)
    bar = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [x + i * bar for x in range(len(columns))]
        ax.bar(xs, [row["cells"].get(c, 0.0) for c in columns], width=bar, label=row["variant"])
    ax.set_xticks([x + bar * (len(rows) - 1) / 2 for x in range(len(columns))])
    ax.set_xticklabels(columns, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score")
    ax.set_title(f"Sweep: {table['sweep']}")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_table(table: Mapping[str, Any], sweep_dir: str | Path) -> dict[str, Path]:
    """Writes sweep.json, sweep.md and sweep.png into `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    out = {k: sweep_dir / f"sweep.{k}" for k in ("json", "md", "png")}
    out["json"].write_text(json.dumps(table, indent=2) + "\n")
    out["md"].write_text(format_markdown(table) + "\n")
    plot_table(table, out["png"])
    return out


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """(sweep file, keyword arguments of run_sweep); bad flags raise ConfigError."""
    file, kwargs, extra, rest = None, {}, [], []
    for arg in argv:
        name, has_value, value = arg.partition("=")
        if arg in ("-h", "--help"):
            print(f"{USAGE}\n\n{__doc__}")
            raise SystemExit(0)
        if name == "--sweep_dir" and has_value:
            kwargs["sweep_dir"] = value
        elif name == "--base" and has_value:
            kwargs["base"] = [f for f in value.split(",") if f]
        elif arg.startswith("--gin") and has_value:
            rest.append(arg)
        elif not arg.startswith("-") and file is None:
            file = arg
        else:
            raise main_lib.ConfigError(f"unknown or malformed argument {arg!r}; {USAGE}")
    if file is None:
        raise main_lib.ConfigError(USAGE)
    files, bindings, search_paths = main_lib.parse_args(rest)
    if files:
        raise main_lib.ConfigError(f"--gin_file is not a sweep flag (use --base); {USAGE}")
    extra = [*extra, *bindings]
    return file, {**kwargs, "extra": extra, "search_paths": search_paths}


def main(argv: Sequence[str]) -> int:
    """`python -m optiml.sweep FILE ...`; returns the exit code."""
    try:
        file, kwargs = parse_args(argv)
        run_sweep(file, **kwargs)
    except (main_lib.ConfigError, FileNotFoundError) as e:
        print(f"optiml sweep: {main_lib._first_line(e)}", file=sys.stderr)
        return 2
    except VariantError as e:
        print(f"optiml sweep: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from optiml import sweep  # gin's registry knows optiml.sweep.Sweep, not __main__.Sweep

    sys.exit(sweep.main(sys.argv[1:]))
