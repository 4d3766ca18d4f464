"""The per-benchmark table: declared vs available tasks, categories and examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml.bench import mixing
from optiml.bench.sources import niv2
from optiml.tools import table

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_data(monkeypatch, tmp_path):
    """Everything absent but the fixtures (counts are cached per task: cleared around)."""
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    caches = (niv2.load_task, niv2.instance_counts, mixing.count_examples)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


def test_rows_over_the_fixture_data(fixture_data):
    """Every benchmark still gets its row."""
    rows = {r["key"]: r for r in table.benchmark_table()}
    assert set(rows) >= {"niv2", "promptsource", "flan", "t5", "crossfit", "exmix", "unifiedskg"}
    assert (rows["crossfit"]["catalog_tasks"], rows["crossfit"]["tasks_here"]) == (160, 2)
    assert (rows["crossfit"]["train_examples"], rows["crossfit"]["test_examples"]) == (2 + 2, 3)
    assert (rows["exmix"]["tasks_here"], rows["exmix"]["train_examples"]) == (1, 2)
    # spider is fully supervised: its 40 rows split into train and held-out test; dart has 1
    skg = rows["unifiedskg"]
    assert skg["tasks_here"] == 2 and skg["train_examples"] + skg["test_examples"] == 40 + 1
    assert rows["dialogue"]["tasks_here"] == 1
    assert rows["niv2"]["tasks_here"] == rows["flan"]["tasks_here"] == 0
    assert rows["mmlu"]["tasks_here"] == 0
    assert rows["niv2"]["paper_tasks"] == 1613 and rows["promptsource"]["paper_examples"] == "12.8M"


def _row(key: str, *values) -> dict:
    return dict(zip(table.COLUMNS, (key, *values), strict=True))


def test_render_markdown_and_tsv():
    row = _row("x", 3, 2, 2, 1, 10, 5, 4, 2, "1M")
    md = table.render([row, _row("y", 1, 1, 1, 1, 1, 1, 1, 1, "-")])
    lines = md.splitlines()
    assert lines[0].startswith("| benchmark | tasks declared | tasks here |")
    assert lines[2] == "| x | 3 | 2 | 2 | 1 | 10 | 5 | 4 | 2 | 1M |"
    assert lines[-1] == "| total | 4 | 3 | - | - | 11 | 6 | 5 | - | - |"
    assert table.render([row], markdown=False).splitlines()[1] == "x\t3\t2\t2\t1\t10\t5\t4\t2\t1M"


def test_level_sizes_next_to_the_papers(monkeypatch, tmp_path):
    """The declared training level next to Table 1's 1545 tasks / 93 categories and
    OPT-IML-Max's 1991 tasks; with no data here nothing is available."""
    (tmp_path / "natinst").mkdir()  # a data folder that holds no task
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    niv2.load_task.cache_clear()
    niv2.instance_counts.cache_clear()
    rows = {r[0]: r for r in table.level_rows()}
    assert list(rows) == ["train", "train (OPT-IML-Max)", "dev", "test"]
    train, max_train = rows["train"], rows["train (OPT-IML-Max)"]
    assert train[5:] == (1545, "93") and max_train[5] == 1991
    assert 1500 < train[1] < max_train[1] and train[2] == 0 and train[3] > 60
    md = table.render_levels([train]).splitlines()
    assert md[0] == ("| level | tasks declared | tasks here | categories declared | "
                     "categories here | paper tasks | paper categories |")  # fmt: skip
    assert md[2] == f"| train | {train[1]} | 0 | {train[3]} | 0 | 1545 | 93 |"
