"""FLAN's templates.py read as data (ast, never imported), and its input inversions dropped."""

from __future__ import annotations

import pytest

from optiml.bench.sources import flan_templates as ft

SAMPLE = '''
"""Templates."""
import copy
PATTERNS = {
    "rte": [
        ("{premise}\\n\\nCan we conclude \\"{hypothesis}\\"?\\n\\n{options_}", "{answer}"),
        ("Premise: {premise}\\nHypothesis: {hypothesis}\\n{options_}", "{answer}"),
        ("Generate a context and a hypothesis.", "Context: {premise}\\nHypothesis: {hypothesis}"),
    ],
    "wmt": [
        ("{sent1}\\n\\nTranslate to {lang2}", "{sent2}"),
        ("Translate to {lang2}:\\n\\n{sent1}", "{sent2}"),
        ("{sent2}\\n\\nTranslate to {lang1}", "{sent1}"),
        ("Write a sentence not in {lang1}.", "{sent2}"),
    ],
}
FEWSHOT = copy.deepcopy(PATTERNS)
'''


def test_read_patterns_parses_without_executing(tmp_path):
    path = tmp_path / "templates.py"
    path.write_text(SAMPLE + "raise SystemExit('executed!')\n")
    patterns = ft.read_patterns(path)
    assert list(patterns) == ["rte", "wmt"] and len(patterns["rte"]) == 3
    assert patterns["rte"][0] == (
        '{premise}\n\nCan we conclude "{hypothesis}"?\n\n{options_}',
        "{answer}",
    )
    with pytest.raises(ft.TemplateFileError, match="FEWSHOT .* is not a literal"):
        ft.read_patterns(path, "FEWSHOT")
    with pytest.raises(ft.TemplateFileError, match="no top-level NOPE"):
        ft.read_patterns(path, "NOPE")
    with pytest.raises(ft.TemplateFileError, match="cannot read"):
        ft.read_patterns(tmp_path / "absent.py")


def test_input_inversions_are_dropped(tmp_path):
    path = tmp_path / "templates.py"
    path.write_text(SAMPLE)
    patterns = ft.read_patterns(path)
    assert [t[0][:9] for t in ft.original_templates(patterns["rte"])] == ["{premise}", "Premise: "]
    # the reverse translation direction and the input-free "Write a sentence" are inversions
    assert ft.original_templates(patterns["wmt"]) == patterns["wmt"][:2]
    assert ft.templates_file("v2", tmp_path) == tmp_path / "flan/templates/v2/templates.py"
    assert ft.templates_file(str(path)) == path


@pytest.mark.data
def test_flan_2021_and_2022_files(data_dir):
    v1 = ft.read_patterns(ft.templates_file("v1", data_dir))
    assert len(v1) == 61 and {len(t) for t in v1.values()} == {10}
    kept = {k: ft.original_templates(t) for k, t in v1.items()}
    assert round(sum(map(len, kept.values())) / len(kept), 1) == 8.3  # paper Table 1: 8.5
    assert len(kept["rte"]) == 9 and kept["rte"][-1][0].startswith("Determine if the sentence")
    assert all(t[1] == "{highlights}" for t in kept["cnn_dailymail"])  # no "write an article"
    v2 = ft.read_patterns(ft.templates_file("v2", data_dir))
    assert len(v2) == 97 and v2["rte"][0][0].startswith("{premise}\n\nQuestion with options:")
