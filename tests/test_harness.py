"""The lm-evaluation-harness backend against lm-eval's own `hf` backend on the same tiny random
OPT (transformers config saved locally), over two local tasks (tests/fixtures/lm_eval: a
multiple-choice task and a generation task, JSON files, no download): equal per-item
log-likelihoods (within 1e-4) and greedy flags, identical accuracies and generations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from opt_testing import REAL_VOCAB, save_text_model

pytestmark = [pytest.mark.data, pytest.mark.slow]
lm_eval = pytest.importorskip("lm_eval")

TASKS = Path(__file__).parent / "fixtures" / "lm_eval"
CONFIG = REAL_VOCAB.replace(max_positions=128)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data_dir):
    return save_text_model(tmp_path_factory.mktemp("tiny_opt"), data_dir / "gpt2_bpe", CONFIG)


def _evaluate(model: str, model_args: str, tmp_path, monkeypatch) -> dict:
    import datasets
    from lm_eval.tasks import TaskManager

    import optiml.evaluation.harness  # noqa: F401  (registers "optiml")

    monkeypatch.chdir(TASKS)  # the task files name their data relative to it
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=["optiml_test_mc", "optiml_test_gen"],
        task_manager=TaskManager(include_path=str(TASKS)),
        log_samples=True,
        batch_size=8,
        device="cpu",
    )


def test_optiml_backend_equals_the_hf_backend(folder, tmp_path, monkeypatch):
    hf_args = f"pretrained={folder},dtype=float32,attn_implementation=eager"
    theirs = _evaluate("hf", hf_args, tmp_path, monkeypatch)
    ours = _evaluate("optiml", f"path={folder}", tmp_path, monkeypatch)
    for task in ("optiml_test_mc", "optiml_test_gen"):
        keep = ("acc,none", "acc_norm,none", "exact_match,none")
        want = {k: v for k, v in theirs["results"][task].items() if k in keep}
        assert {k: v for k, v in ours["results"][task].items() if k in keep} == want
    rows = zip(theirs["samples"]["optiml_test_mc"], ours["samples"]["optiml_test_mc"], strict=True)
    options = 0
    for a, b in rows:
        lls = np.array([[float(r[0]) for r in x["filtered_resps"]] for x in (a, b)])
        np.testing.assert_allclose(lls[1], lls[0], atol=1e-4, rtol=0)
        greedy = [[bool(r[1]) for r in x["filtered_resps"]] for x in (a, b)]
        assert greedy[0] == greedy[1]
        options += lls.shape[1]
    assert options == 37  # 12 questions, 2-4 choices each: every option compared
    gen = zip(theirs["samples"]["optiml_test_gen"], ours["samples"]["optiml_test_gen"], strict=True)
    for a, b in gen:
        assert a["filtered_resps"] == b["filtered_resps"] and a["filtered_resps"][0].strip()


def test_the_command_a_researcher_runs(folder, tmp_path):
    """`optiml lm-eval run --model optiml ...` (here `python -m optiml.main lm-eval ...`)."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "optiml.main", "lm-eval", "run", "--model", "optiml",
               "--model_args", f"path={folder}", "--tasks", "optiml_test_mc", "--include_path",
               str(TASKS), "--limit", "4", "--output_path", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=TASKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["results"]["optiml_test_mc"]["sample_len"] == 4
    assert "acc,none" in results["results"]["optiml_test_mc"]
