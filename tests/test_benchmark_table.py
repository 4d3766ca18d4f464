"""The per-benchmark table: declared vs available tasks, categories and examples."""

from __future__ import annotations

from pathlib import Path

from optiml.bench.sources import niv2
from optiml.tools import table

FIXTURES = Path(__file__).parent / "fixtures"


def test_rows_over_the_fixture_data(monkeypatch, tmp_path):
    """Everything absent but the fixtures: every benchmark still gets its row."""
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    niv2.load_task.cache_clear()  # NIV2's caches are keyed by task, not by data directory
    niv2.instance_counts.cache_clear()
    rows = {r.benchmark: r for r in table.benchmark_rows()}
    assert set(rows) >= {"niv2", "promptsource", "flan", "t5", "crossfit", "exmix", "unifiedskg"}
    assert (rows["crossfit"].declared, rows["crossfit"].available) == (160, 2)
    assert (rows["crossfit"].train_examples, rows["crossfit"].test_examples) == (2 + 2, 3)
    assert (rows["exmix"].available, rows["exmix"].train_examples) == (1, 2)
    # spider is fully supervised: its 40 rows split into train and held-out test; dart has 1
    skg = rows["unifiedskg"]
    assert skg.available == 2 and skg.train_examples + skg.test_examples == 40 + 1
    assert rows["dialogue"].available == 1
    assert rows["niv2"].available == rows["flan"].available == rows["mmlu"].available == 0
    assert rows["niv2"].paper_tasks == 1613 and rows["promptsource"].paper_examples == "12.8M"


def test_render_markdown_and_tsv():
    row = table.Row("x", 3, 2, 2, 1, 10, 5, 4, 2, "1M")
    md = table.render([row, table.Row("y", 1, 1, 1, 1, 1, 1, 1, 1, "-")])
    lines = md.splitlines()
    assert lines[0].startswith("| benchmark | tasks declared | tasks here |")
    assert lines[2] == "| x | 3 | 2 | 2 | 1 | 10 | 5 | 4 | 2 | 1M |"
    assert lines[-1] == "| total | 4 | 3 | - | - | 11 | 6 | 5 | - | - |"
    assert table.render([row], markdown=False).splitlines()[1] == "x\t3\t2\t2\t1\t10\t5\t4\t2\t1M"
