"""FLAN's own instruction templates, read as data from FLAN's `templates.py` (parsed with `ast`,
never imported or executed).

    patterns = read_patterns(templates_file("v1"))    # FLAN 2021: 61 datasets x 10 templates
    patterns["rte"][0]  -> ('{premise}\\n\\nBased on the paragraph above can we conclude that
                            "{hypothesis}"?\\n\\n{options_}', '{answer}')
    original_templates(patterns["rte"])   # the 9 that keep the task (the 10th is an inversion)

Files: `$OPTIML_DATA_DIR/flan/templates/v1/templates.py` (FLAN 2021, google-research/FLAN
`flan/templates.py`) and `.../v2/templates.py` (Flan 2022, `flan/v2/templates.py`; its
`PATTERNS` is a literal too, its `FEWSHOT_PATTERNS` is built by calls and cannot be read as data).
A template is `(inputs pattern, targets pattern)` with `{field}` slots that FLAN's preprocessors
fill (`options_` is the "OPTIONS:\\n- a\\n- b" block).

Input inversions (paper A.1 keeps only templates of the original task): FLAN lists them last,
e.g. "Generate a context and a hypothesis." for RTE. `original_templates` keeps a template when
its target is the dataset's usual one (the first template's) and its inputs hold the dataset's
input fields (those of the first template that most templates with that target use); this drops
every inversion of FLAN 2021 that swaps inputs and outputs or drops the input.
"""

from __future__ import annotations

import ast
import functools
import string
from collections.abc import Sequence
from pathlib import Path

from optiml import paths

Template = tuple[str, str]


class TemplateFileError(ValueError):
    """A templates file is missing, not Python, or lacks the literal dict asked for."""


def templates_file(version: str = "v1", root: Path | None = None) -> Path:
    """`<root or $OPTIML_DATA_DIR>/flan/templates/<version>/templates.py`; a `version` that is an
    existing file path is returned as it is (a templates file of one's own)."""
    if Path(version).is_file():
        return Path(version)
    return (root or paths.data_dir()) / "flan" / "templates" / version / "templates.py"


@functools.cache
def read_patterns(path: Path | str, name: str = "PATTERNS") -> dict[str, list[Template]]:
    """The literal dict `name` of a FLAN templates file: {dataset: [(inputs, targets), ...]}."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        raise TemplateFileError(f"FLAN templates {path}: cannot read ({err})") from None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise TemplateFileError(
                    f"FLAN templates {path}: {name} (line {node.lineno}) is not a literal"
                ) from None
            return {str(k): [(str(i), str(t)) for i, t in v] for k, v in value.items()}
    raise TemplateFileError(f"FLAN templates {path}: no top-level {name} = {{...}}")


def fields(text: str) -> set[str]:
    """The `{field}` names of a pattern."""
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def original_templates(templates: Sequence[Template]) -> list[Template]:
    """The templates of the original task, without FLAN's input inversions (module docstring)."""
    if not templates:
        return []
    target = templates[0][1]
    same = [t for t in templates if t[1] == target]
    counts = {f: sum(f in fields(t[0]) for t in same) for f in fields(templates[0][0])}
    inputs = {f for f, n in counts.items() if 2 * n > len(same)} - {"options_"}
    return [t for t in same if inputs <= fields(t[0])]


# Flan 2022's no-options templates (`PATTERNS_NO_OPTIONS` of flan/v2/templates.py): the options
# slot is cut with the line breaks before it, in this order.
OPTIONS_SLOTS = ("\n\n{options_}", "\n{options_}", "{options_}", "\n\n{options_str}")


def without_options(template: Template) -> Template:
    """A template that does not list the answer options: `"{premise}\n\n{options_}"` ->
    `"{premise}"` (Flan 2022's `zs_noopt` / `fs_noopt` styles)."""
    inputs = template[0]
    for slot in OPTIONS_SLOTS:
        inputs = inputs.replace(slot, "")
    return inputs, template[1]


def options_block(options: Sequence[str]) -> str:
    """FLAN's options slot `{options_}`: "OPTIONS:\n- yes\n- no"."""
    return "OPTIONS:\n- " + "\n- ".join(options)
