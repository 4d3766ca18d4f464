"""The catalog in tasks/: complete, consistent, and strict about bad rows."""

from __future__ import annotations

import collections

import pytest

from optiml.bench import catalog, names


def test_every_source_benchmark_is_declared():
    keys = set(catalog.benchmarks())
    assert {"niv2", "promptsource", "flan", "crossfit", "exmix", "t5", "unifiedskg"} <= keys
    assert {"reasoning", "dialogue", "mmlu", "bbh"} <= keys
    assert not catalog.benchmarks()["dialogue"].enabled  # off by default
    props = {k: catalog.benchmarks()[k].proportion for k in
             ("crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg")}  # fmt: skip
    assert list(props.values()) == [4, 2, 20, 25, 45, 2, 2]


def test_niv2_declares_all_1613_tasks_and_76_categories():
    niv2 = catalog.tasks("niv2")
    assert len(niv2) == 1613
    assert len({r.category for r in niv2}) == 76
    assert set(catalog.niv2_categories()) == {r.category for r in niv2}
    assert len(catalog.official_split("niv2", "test")) == 119
    test = set(catalog.official_split("niv2", "test"))
    # the paper's split, not NIV2's: Table 12's 44 tasks are `test`, Table 15's 25 `dev`, the rest
    # (NIV2's own `excluded` ones in every language included) training candidates
    roles = collections.Counter(r.role for r in niv2)
    assert roles == {"train": 1544, "test": 44, "dev": 25}
    assert {r.task for r in niv2 if r.role == "test"} <= test


def test_records_are_valid_and_unique():
    records = catalog.tasks()
    assert len({r.name for r in records}) == len(records)
    known = set(catalog.categories())
    for r in records:
        assert names.SEQIO_NAME_RE.match(r.name)
        assert r.category in known and r.role in catalog.ROLES
    counts = collections.Counter(r.benchmark for r in records)
    assert counts["mmlu"] == 57 and counts["bbh"] == 27 and counts["reasoning"] == 14


def test_category_map_merges_by_hand():
    cmap = catalog.category_map()
    assert cmap[("crossfit", "hate speech detection")] == "Toxic Language Detection"
    assert cmap[("flan", "Natural Language Inference")] == "Textual Entailment"
    assert catalog.task("optiml:flan:copa").category == "Cause Effect Classification"
    assert catalog.task("optiml:promptsource:super_glue_copa").role == "dev"


def test_lookup_by_name_and_errors():
    rec = catalog.task("optiml:niv2:task1557_jfleg_answer_generation#2shot")
    assert (rec.benchmark, rec.category, rec.metric) == (
        "niv2",
        "Grammar Error Correction",
        "rougeL",
    )
    with pytest.raises(KeyError, match="not in the catalog"):
        catalog.task("optiml:niv2:task9999_nothing")
    with pytest.raises(KeyError, match="unknown benchmark"):
        catalog.tasks("nope")


def test_bad_rows_are_reported_with_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "benchmarks.tsv").write_text(
        "benchmark\ttitle\tinstruction_type\tloader\tenabled\tproportion\tcuration_cap\t"
        "paper_tasks\tpaper_categories\tofficial_splits\nniv2\tN\tx\tm\ttrue\t25\t0\t1\t1\tfalse\n"
    )
    (tmp_path / "categories.tsv").write_text("category\tkey\torigin\nMisc.\tmisc\tniv2\n")
    (tmp_path / "task_lists.tsv").write_text("list\tbenchmark\ttask\tpaper\nx\tnope\tt\tT1\n")
    header = "\t".join(catalog.TASK_COLUMNS) + "\n"
    (tmp_path / "catalog" / "niv2.tsv").write_text(
        header + "task1\ttask1\td\tNo Such\tx\ttrain\tgenerate\trougeL\tt\tEnglish\n"
    )
    monkeypatch.setattr(catalog, "catalog_dir", lambda: tmp_path)
    cached = (catalog.benchmarks, catalog.categories, catalog._all_tasks, catalog.task_lists)
    for fn in cached:
        fn.cache_clear()
    try:
        with pytest.raises(catalog.CatalogError, match=r"niv2.tsv:2: task 'task1' has unknown"):
            catalog.tasks()
        with pytest.raises(catalog.CatalogError, match=r"task_lists.tsv:2: bad task list row"):
            catalog.task_lists()
    finally:
        for fn in cached:
            fn.cache_clear()


def test_the_papers_task_lists_are_read_from_tasks():
    lists = catalog.task_lists()
    assert lists["flan_heldout"][:2] == (("flan", "anli_r1"), ("flan", "anli_r2"))
    sizes = {name: len(rows) for name, rows in lists.items()}
    assert sizes == {"opt_suite": 14, "t0_heldout": 10, "flan_heldout": 14, "niv2_heldout": 44,
                     "unifiedskg_heldout": 3, "table15": 42, "figure1_supervised": 2}  # fmt: skip
    declared = {(r.benchmark, r.task) for r in catalog.tasks()}
    assert all(t in declared for rows in lists.values() for t in rows)


def test_catalog_roles_follow_the_papers_tables():
    """Every task of Tables 9-13 and 15 has the role its table gives it, and no other task has
    an evaluation role (build_catalog.py writes the roles from task_lists.tsv)."""
    from tasks.build_catalog import paper_roles

    roles = paper_roles()
    for r in catalog.tasks():
        expected = roles.get((r.benchmark, r.task))
        if expected is not None:
            assert r.role == expected, r.name
        else:
            assert r.role in ("train", "excluded", "eval_only", "off"), r.name
    assert roles[("unifiedskg", "spider")] == "supervised"  # Table 13: fully supervised
    assert roles[("promptsource", "super_glue_copa")] == "dev"  # Tables 9 and 15: dev wins
    assert catalog.task("optiml:niv2:task1664_winobias_text_generation").category == (
        "Stereotype Detection"
    )  # Table 15 (NIV2 files it under Coreference Resolution)
