"""optiml.tools.dcn: the bytes each slice sends on DCN per step, worked out by hand on the
tiny OPT; the DCN rows of `optiml memory` for hybrid meshes; every calculator example in
tpu_scripts/README.md is what the calculator prints."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from optiml.models.opt import named_config
from optiml.tools import dcn, memory

TINY = named_config("tiny")  # hidden 64, 2 layers, 4 heads (head_dim 16), ffn 256, vocab 50272
P = memory.param_count(TINY)
# Tensors without an `embed` axis (so never split over fsdp): per layer the q/k/v biases
# [4 heads, 16] and fc1's bias [256]: 3 * 64 + 256 = 448, two layers.
NO_EMBED = 2 * 448


def across(data: int = 1, fsdp: int = 1, model: int = 1) -> dict[str, int]:
    return {"data": data, "fsdp": fsdp, "model": model}


@pytest.mark.parametrize("rules", ["standard", "fsdp"])
def test_slices_on_data_all_reduce_the_whole_gradient(rules):
    # A ring all-reduce over k slices sends 2 (k - 1) / k of one fp32 gradient from each slice.
    assert dcn.traffic(TINY, across(data=2), rules) == dcn.Traffic(2, 4 * P, 0)
    assert dcn.traffic(TINY, across(data=4), rules).gradients == 6 * P  # 2 * 3/4 * 4P
    assert dcn.traffic(TINY, across(data=2), rules, microbatches=3).gradients == 12 * P


def test_slices_on_fsdp_reduce_scatter_and_gather_the_fsdp_split_weights():
    # FSDP rules: the embed-carrying tensors are split over fsdp: reduce-scatter (1/2 of their
    # 4 bytes each) and two all-gathers a step (1/2 each); the rest is all-reduced (2 * 1/2).
    embed_split = P - NO_EMBED
    traffic = dcn.traffic(TINY, across(fsdp=2), "fsdp")
    assert traffic.gradients == 4 * embed_split // 2 + 4 * NO_EMBED
    assert traffic.weight_gathers == 4 * embed_split
    # Standard rules split nothing over fsdp: a plain all-reduce over both slices.
    assert dcn.traffic(TINY, across(fsdp=2), "standard") == dcn.Traffic(2, 4 * P, 0)


def test_slices_on_model_move_no_gradient_but_warn():
    traffic = dcn.traffic(TINY, across(model=2), "standard")
    assert (traffic.gradients, traffic.weight_gathers) == (0, 0)  # each holds its own half
    assert traffic.warnings == (
        "dcn_model=2: every layer's tensor-parallel activation collectives cross DCN (not counted)",
    )


def test_memory_cli_adds_the_dcn_rows_on_hybrid_meshes(capsys):
    args = ["--size", "30b", "--batch", "256", "--rules", "fsdp"]
    assert memory.main([*args, "--mesh", "fsdp=32,model=2,dcn_data=2", "--microbatches", "2"]) == 0
    out = capsys.readouterr().out
    assert "mesh data=2,fsdp=32,model=2 = 2 slices (dcn_data=2) of 64 (128 devices)" in out
    rows = {line[:34].strip(): line.split()[-1] for line in out.splitlines()}
    # 29,974,540,288 fp32 gradients = 111.66 GiB, all-reduced over 2 slices, twice (2 micro).
    assert rows["gradient reduction"] == "223.33"
    assert rows["FSDP weight all-gathers"] == "0.00"
    assert rows["per device (/ devices per slice)"] == f"{223.33 / 64:.2f}"
    # The per-device memory is the one of the whole mesh (data 2 x fsdp 32 x model 2).
    whole = memory.estimate(
        named_config("30b"), {"data": 2, "fsdp": 32, "model": 2}, "fsdp", 256, 2048, 2
    )
    assert rows["TOTAL, full remat"] == f"{whole.total(remat=True) / memory.GIB:.2f}"
    assert memory.main([*args, "--mesh", "fsdp=64,model=2"]) == 0
    assert "DCN" not in capsys.readouterr().out  # one slice: nothing crosses


def test_memory_cli_names_a_bad_dcn_axis(capsys):
    assert memory.main(["--size", "30b", "--batch", "256", "--mesh", "dcn_tensor=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad item 'dcn_tensor=2'" in err


def _readme_runs() -> list[tuple[str, str]]:
    """(arguments, printed output) of every `$ python -m optiml.tools.memory ...` example in
    tpu_scripts/README.md (4-space indented blocks)."""
    lines = (Path(__file__).parents[1] / "tpu_scripts" / "README.md").read_text().splitlines()
    runs = []
    for i, line in enumerate(lines):
        if line.startswith("    $ python -m optiml.tools.memory "):
            out = []
            for following in lines[i + 1 :]:
                if not following.startswith("    ") or following.startswith("    $ "):
                    break
                out.append(following[4:])
            runs.append((line.split("optiml.tools.memory ", 1)[1], "\n".join(out)))
    return runs


@pytest.mark.parametrize("args, printed", _readme_runs())
def test_the_figures_in_the_tpu_readme_are_the_calculators(args, printed, capsys):
    assert memory.main(shlex.split(args)) == 0
    assert capsys.readouterr().out.rstrip("\n") == printed
