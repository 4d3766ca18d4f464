"""Super-NaturalInstructions: exact prompts, deterministic delimiters, splits, bad files, and one
rendered + tokenized example for every available task."""

from __future__ import annotations

import json

import pytest

from optiml.bench import catalog, levels
from optiml.bench.sources import niv2

TASK = niv2.NIV2Task(
    task_id="task999_toy",
    definition="Answer the question",
    positive_examples=(("What is 1+1?", "2"), ("Capital of France?", "Paris."), ("x", "y")),
    instances=tuple(
        (f"task999-{i}", f"Question {i}", (f"ans {i}", f"alt {i}")) for i in range(300)
    ),
)


def test_prompt_follows_tk_instruct_then_delimiter():
    prompt = niv2.render_prompt(TASK, "Is it raining?", num_demos=2, delimiter="\nAnswer:")
    assert prompt == (
        "Definition: Answer the question.\n\n"
        " Positive Example 1 -\nInput: What is 1+1?\n Output: 2.\n"
        " Positive Example 2 -\nInput: Capital of France?\n Output: Paris.\n"
        "Now complete the following example -\nInput: Is it raining?\nAnswer:"
    )
    zero = niv2.render_prompt(TASK, "Say hi", num_demos=0, delimiter=" A:")
    assert (
        zero == "Definition: Answer the question.\n\nNow complete the following example -\n"
        "Input: Say hi. A:"
    )
    # a prompt that already ends with ":" gets no delimiter (paper §2.4)
    assert niv2.render_prompt(TASK, "Fill in:", 0, " A:").endswith("Input: Fill in:")


def test_delimiters_and_targets_are_deterministic_per_seed():
    a = niv2.render_examples(TASK, "train", seed=0)
    assert a == niv2.render_examples(TASK, "train", seed=0)
    b = niv2.render_examples(TASK, "train", seed=1)
    assert [e.inputs for e in a] != [e.inputs for e in b]
    used = {d for d in niv2.DELIMITERS for e in a if e.inputs.endswith(d)}
    assert used == set(niv2.DELIMITERS)  # all 8 occur over 300 examples
    for e in a:
        assert e.targets.startswith(" ") and e.targets[1:] in e.references
    assert {e.targets for e in a} & {" alt 0", " alt 1", " alt 2", " alt 3", " alt 4"}


def test_splits_keep_heldout_instances_out_of_training():
    train = {e.id for e in niv2.render_examples(TASK, "train", heldout="toyset")}
    test = {e.id for e in niv2.render_examples(TASK, "test", heldout="toyset")}
    val = niv2.render_examples(TASK, "validation", heldout="toyset")
    assert train and test and not train & (test | {e.id for e in val})
    assert len(train) + len(val) == 300 and test <= {e.id for e in val}
    # held out by (dataset, input text): another task on the same texts holds out the same ones
    texts = {i[0]: i[1] for i in TASK.instances}
    assert all(levels.heldout_instance("toyset", texts[e.id]) for e in val)
    other = niv2.NIV2Task("task998_other", "d", (), tuple((f"o-{i}", t, ("x",)) for i, t in
                                                          enumerate(texts.values())))  # fmt: skip
    other_val = niv2.render_examples(other, "validation", heldout="toyset")
    assert [e.inputs.split("Input: ")[-1][:11] for e in other_val] == [
        e.inputs.split("Input: ")[-1][:11] for e in val
    ]
    # unsupervised tasks: all instances train; the first 100 are the test instances
    assert len(niv2.render_examples(TASK, "train")) == 300
    assert [e.id for e in niv2.render_examples(TASK, "test")] == [
        f"task999-{i}" for i in range(100)
    ]


def test_missing_and_malformed_files_are_reported_by_name(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "task1_bad.json").write_text("{not json")
    (tmp_path / "tasks" / "task2_noinst.json").write_text(json.dumps({"Definition": ["d"]}))
    with pytest.raises(niv2.TaskFileError, match="task1_bad: malformed task file"):
        niv2.load_task("task1_bad", tmp_path)
    with pytest.raises(niv2.TaskFileError, match="task2_noinst: malformed"):
        niv2.load_task("task2_noinst", tmp_path)
    with pytest.raises(niv2.TaskFileError, match="task3_gone: task file .* is missing"):
        niv2.load_task("task3_gone", tmp_path)
    available, problems = niv2.availability(tmp_path)
    assert available == [] and len(problems) == 1613
    assert problems["task001_quoref_question_generation"] == "missing"


@pytest.fixture(scope="module")
def walk(data_dir):
    """Every declared NIV2 task: its first rendered example (2 demos) or why it is unavailable.
    Reads each task file once, straight from JSON (seqio is exercised in test_registry)."""
    root = data_dir / "natinst"
    present = niv2.present_task_ids(root)
    examples, problems = {}, {}
    for rec in catalog.tasks("niv2"):
        if rec.source_id not in present:
            problems[rec.task] = "missing"
            continue
        split = "test" if rec.role in ("test", "dev") else "train"
        task = niv2.parse_task(
            rec.source_id, json.loads(niv2.task_path(rec.source_id, root).read_text())
        )
        examples[rec.task] = niv2.render_examples(
            task, split, heldout=niv2.heldout_key(rec), num_demos=2, limit=1
        )[0]
    return examples, problems


@pytest.mark.data
def test_exactly_the_present_tasks_are_available(walk, data_dir):
    examples, problems = walk
    assert len(examples) == 1461 and len(problems) == 152
    on_disk = niv2.present_task_ids(data_dir / "natinst")
    present = {r.task for r in catalog.tasks("niv2") if r.source_id in on_disk}
    assert set(examples) == present


@pytest.mark.data
def test_every_available_task_renders_and_tokenizes(walk, data_dir):
    from optiml.pipeline.vocab import OPTVocabulary

    vocab = OPTVocabulary(data_dir / "gpt2_bpe")
    examples, _ = walk
    for example in examples.values():
        assert example.inputs.startswith("Definition: ") and example.targets.startswith(" ")
    texts = [e.inputs for e in examples.values()] + [e.targets for e in examples.values()]
    ids = vocab.encode_batch(texts)
    assert len(ids) == 2 * 1461
    assert all(len(x) > 0 and min(x) >= 4 for x in ids)  # real text never yields a special id
