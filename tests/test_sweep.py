"""optiml.sweep: variants trained and evaluated through optiml.main, one table, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiml import main as main_lib
from optiml import sweep

# BATCH_SIZE 8: the tests run on 8 host devices (conftest), which the variants' processes inherit.
TINY = [
    "mixing.MixtureSpec.max_tasks = 2", "TRAIN_STEPS = 3",
    "optimizer.OptimizerConfig.warmup_steps = 1", "BATCH_SIZE = 8", "LENGTH = 64",
    "trainer.train.checkpoint_every = 3", "trainer.train.eval_every = 3",
    "trainer.train.eval_batches = 1", "evaluate.evaluate.max_tasks_per_level = 1",
    "evaluate.evaluate.max_examples = 2", "evaluate.evaluate.max_new_tokens = 4",
]  # fmt: skip


def write_sweep(path: Path, variants: dict[str, list[str]]) -> Path:
    path.write_text(
        "from __gin__ import dynamic_registration\nfrom optiml import sweep\n"
        f"sweep.Sweep.common = {TINY!r}\nsweep.Sweep.variants = {variants!r}\n"
    )
    return path


def test_table_rows_columns_and_files(tmp_path: Path) -> None:
    report = {"levels": {"fully_heldout": {"combined": 40.0, "shots": {"0": 30.0, "5": 50.0},
                                           "benchmarks": {"niv2": {"0": 30.0}}}}}  # fmt: skip
    cells = sweep.aggregates(report)
    assert cells == {"Fully held-out combined": 40.0, "Fully held-out 0-shot": 30.0,
                     "Fully held-out 5-shot": 50.0, "Fully held-out/niv2 0-shot": 30.0}  # fmt: skip
    rows = [{"variant": v, "bindings": [f"X = {i}"], "fingerprint": "f", "cells": cells}
            for i, v in enumerate(("a", "b"))]  # fmt: skip
    table = {"sweep": "t", "file": "t.gin", "base": ["p.gin"], "common": [],
             "columns": sweep._columns(rows), "rows": rows}  # fmt: skip
    out = sweep.write_table(table, tmp_path)
    md = out["md"].read_text()
    assert "| a | 40.0 | 30.0 | 50.0 |" in md and "| b | 30.0 |" in md
    assert json.loads(out["json"].read_text())["rows"][1]["variant"] == "b"
    assert out["png"].stat().st_size > 0


def test_bad_sweep_files_and_flags_fail_with_one_line(tmp_path: Path, capsys) -> None:
    assert sweep.main([str(tmp_path / "none.gin")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = write_sweep(tmp_path / "bad.gin", {"a b": ["X = 1"]})
    assert sweep.main([str(bad)]) == 2
    assert "variant name 'a b'" in capsys.readouterr().err
    assert sweep.main([str(bad), "--gin_file=x.gin"]) == 2
    assert "--base" in capsys.readouterr().err
    with pytest.raises(main_lib.ConfigError, match="has no '='"):
        sweep.variant_args(sweep.Sweep({"a": ["nothing"]}), "a", "/d", [], [])


def test_fingerprint_depends_on_the_config_not_the_directory() -> None:
    s = sweep.Sweep({"a": ["mixing.MixingConfig.eps = 2"], "b": ["mixing.MixingConfig.eps = 3"]})
    fp = lambda v, d: sweep.fingerprint(sweep.variant_args(s, v, d, [], list(s.base)), [])  # noqa: E731
    assert fp("a", "/x/a") == fp("a", "/y/a") != fp("b", "/x/a")


@pytest.mark.slow
@pytest.mark.data
def test_two_variants_end_to_end_and_a_rerun_trains_only_the_missing_one(
    data_dir, tmp_path: Path, capsys
) -> None:
    variants = {"eps_2": ["mixing.MixingConfig.eps = 2"],
                "eps_4096": ["mixing.MixingConfig.eps = 4096"]}  # fmt: skip
    file = write_sweep(tmp_path / "eps.gin", variants)
    args = [str(file), f"--sweep_dir={tmp_path / 'sw'}", f"--gin.CACHE_DIR='{tmp_path / 'c'}'"]
    assert sweep.main(args) == 0
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [r["variant"] for r in table["rows"]] == ["eps_2", "eps_4096"]
    assert all(any(c.startswith("Fully") for c in r["cells"]) for r in table["rows"])
    assert (tmp_path / "sw" / "sweep.png").is_file() and (tmp_path / "sw" / "sweep.md").is_file()
    capsys.readouterr()
    (tmp_path / "sw" / "eps_4096" / "report.json").unlink()
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "1/2 eps_2: done" in out and "2/2 eps_4096: resume" in out


def test_a_variant_dir_of_another_config_is_moved_aside(tmp_path: Path) -> None:
    d = tmp_path / "v"
    assert sweep._variant_state(d, "abc") == "new"
    d.mkdir()
    (d / sweep.FINGERPRINT).write_text("abc\n")
    assert sweep._variant_state(d, "abc") == "resume"
    (d / "report.json").write_text("{}")
    assert sweep._variant_state(d, "abc") == "done"
    assert sweep._variant_state(d, "xyz") == "new"
    assert not d.exists() and (tmp_path / "v.stale-abc" / "report.json").is_file()


ABLATIONS = sorted((Path(__file__).parents[1] / "gin/experiments/ablations").glob("*.gin"))


@pytest.mark.slow
@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_variant_parses_with_both_presets(path: Path) -> None:
    s, _ = sweep.load_sweep(str(path))
    assert len(s.variants) >= 2 and s.title
    for base in (list(s.base), ["experiments/ablations/presets/paper_30b.gin"]):
        extra = ["CACHE_DIR = '/c'"]
        args = [sweep.variant_args(s, v, "/d", extra, base) for v in s.variants]
        fps = {sweep.fingerprint(a, []) for a in args}
        assert len(fps) == len(s.variants), f"{path.name}: two variants share one config"
