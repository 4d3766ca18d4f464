"""The command line a newcomer meets: `optiml --help`, a missing or wrong $OPTIML_DATA_DIR (one
line, exit 2, nothing written) and the tools' help texts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optiml import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = ["--gin_file=runs/quickstart.gin", "--gin.MODEL_DIR='runs/quickstart'"]


def _exit(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main.console_main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_help_lists_every_tool_with_one_line(capsys: pytest.CaptureFixture) -> None:
    code, out, err = _exit(capsys, ["--help"])
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[:2] == [
        "usage: optiml --gin_file=FILE.gin [--gin_file=...] [--gin.KEY=VALUE ...] "
        "[--gin_search_paths=DIR[,DIR...]] [--verbose]",
        "       optiml TOOL [ARGS ...]    (`optiml TOOL --help` shows a tool's options)",
    ]
    tools = lines[lines.index("tools:") + 1 : lines.index("tools:") + 1 + len(main.TOOLS)]
    assert [line.split()[0] for line in tools] == list(main.TOOLS)
    assert all(len(line.split()) > 2 for line in tools)  # the name and a description
    assert _exit(capsys, ["-h"])[1] == out


def test_no_arguments_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    code, out, err = _exit(capsys, [])
    assert code == 2 and out == ""
    message = f"no gin file given; {main.USAGE} (optiml --help lists the tools)"
    assert err.splitlines() == [f"optiml: {message}"]


@pytest.mark.parametrize(
    "value, first_line",
    [
        (None, "optiml: $OPTIML_DATA_DIR is not set; set it to the optiml data folder, holding"),
        ("", "optiml: $OPTIML_DATA_DIR is empty; set it to the optiml data folder, holding"),
        ("{tmp}/nowhere", "optiml: $OPTIML_DATA_DIR={tmp}/nowhere is not a directory; expected"),
        ("{tmp}", "optiml: $OPTIML_DATA_DIR={tmp} is not the optiml data folder: it holds none"),
    ],
)
def test_a_bad_data_dir_is_one_line_exit_2_and_nothing_written(
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    value: str | None,
    first_line: str,
) -> None:
    if value is None:
        monkeypatch.delenv("OPTIML_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("OPTIML_DATA_DIR", value.format(tmp=tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    code, out, err = _exit(capsys, [*QUICKSTART, "--gin.partitioning.DistributedConfig.auto=False"])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(first_line.format(tmp=tmp_path)), err
    assert "(README, section Data)" in err
    assert list(work.iterdir()) == []  # no runs/, no config.gin, no cache


def test_from_a_shell_the_data_error_is_the_only_line(tmp_path: Path) -> None:
    """The real process: no TensorFlow start-up lines, no traceback, then exit 2."""
    env = {k: v for k, v in os.environ.items() if k != "OPTIML_DATA_DIR"}
    proc = subprocess.run(
        [sys.executable, "-m", "optiml.main", *QUICKSTART],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [
        "optiml: $OPTIML_DATA_DIR is not set; set it to the optiml data folder, holding "
        "natinst/, gpt2_bpe/, promptsource/, ... (README, section Data)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_tool_run_as_a_module_reports_the_data_dir_the_same_way(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optiml.tools.rates", "optiml_mix:quickstart"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "OPTIML_DATA_DIR": str(tmp_path / "x")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"optiml: $OPTIML_DATA_DIR={tmp_path}/x is not a directory; expected the optiml data "
        "folder, holding natinst/, gpt2_bpe/, promptsource/, ... (README, section Data)"
    ]


def test_tool_help_keeps_its_examples_on_their_own_lines(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _exit(capsys, ["download", "--help"])
    assert code == 0
    assert out.splitlines()[0].startswith("usage: python -m optiml.tools.download")
    example = "    python -m optiml.tools.download" + " " * 23 + "# into $OPTIML_DATA_DIR/natinst"
    assert example + "/tasks" in out.splitlines()
