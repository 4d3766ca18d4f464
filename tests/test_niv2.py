"""Super-NaturalInstructions: exact prompts, deterministic delimiters, splits, bad files, and one
rendered + tokenized example for every available task."""

from __future__ import annotations

import json
import re

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


DEMOS = (("What is 1+1?", "2"), ("Capital of France?", "Paris."))


def test_appendix_c_format_exact_strings():
    """Paper Appendix C (Figures 7-16): [Instructions:|Task:|-] definition, new line, [Input: ]x,
    delimiter; demonstrations between the definition and the example (§2.4)."""
    zero = niv2.render_appendix_c(" Answer the question ", "Is it raining?", (),
                                  instruction=0, example=0, delimiter="\nAnswer:")  # fmt: skip
    assert zero == "Instructions: Answer the question\nInput: Is it raining?\nAnswer:"
    bare = niv2.render_appendix_c("Classify the review.", "great film", (),
                                  instruction=2, example=1, delimiter=" A:")  # fmt: skip
    assert bare == "Classify the review.\ngreat film A:"  # Figure 13's shape
    two = niv2.render_appendix_c("Answer the question", "Is it raining?", DEMOS,
                                 instruction=1, example=0, delimiter="\noutput:")  # fmt: skip
    assert two == (
        "Task: Answer the question\n"
        "Input: What is 1+1?\noutput: 2\n\n"
        "Input: Capital of France?\noutput: Paris.\n\n"
        "Input: Is it raining?\noutput:"
    )
    # an input that already ends with ":" gets no delimiter (paper §2.4)
    colon = niv2.render_appendix_c("D", "Fill in:", (), instruction=2, example=1, delimiter=" A:")
    assert colon == "D\nFill in:"
    # the choices are seeded per example and all of them occur
    prompts = [niv2.render_prompt(TASK, "x", (), seed=0, instance_id=str(i)) for i in range(60)]
    assert {p.split("Answer the question")[0] for p in prompts} == {"Instructions: ", "Task: ", ""}
    assert {"Input: " in p for p in prompts} == {True, False}


def test_tk_instruct_format_is_ni_collator_byte_for_byte():
    """Tk-Instruct's src/ni_collator.py (definition + 0/2 positive examples, no task name, no
    negatives, no explanation) ends its source with "Output: "; ours is that source without the
    trailing space, the target bringing it: inputs + targets == source + label."""
    zero = niv2.render_tk_instruct("Answer the question", "Is it raining?", ())
    assert zero + " " == (
        "Definition: Answer the question.\n\n"
        "Now complete the following example -\nInput: Is it raining?\nOutput: "
    )
    two = niv2.render_tk_instruct("Answer the question", "Is it raining", DEMOS)
    assert two + " " == (
        "Definition: Answer the question.\n\n"
        " Positive Example 1 -\nInput: What is 1+1?\n Output: 2.\n\n"
        " Positive Example 2 -\nInput: Capital of France?\n Output: Paris.\n\n"
        "Now complete the following example -\nInput: Is it raining.\nOutput: "
    )
    # the closing "Output:" is Tk-Instruct's own: no OPT delimiter is added after it
    (e,) = niv2.render_examples(TASK, "test", num_demos=2, fmt="tk_instruct", limit=1)
    assert e.inputs.endswith("Input: Question 0.\nOutput:") and e.targets in (" ans 0", " alt 0")
    assert e.inputs.count(" Positive Example") == 2


def test_k_shot_takes_positive_examples_then_training_instances():
    """#5shot: the 3 positive examples, then 2 of the task's own instances that the split does
    not evaluate -- never the evaluated instance, never one of the first 100 (test)."""
    test = niv2.render_examples(TASK, "test", num_demos=5, fmt="tk_instruct")
    assert len(test) == 100
    for e in test:
        assert e.inputs.count(" Positive Example ") == 5
        shown = {f"Question {i}" for i in range(300) if f"Input: Question {i}.\n Output:" in
                 e.inputs}  # fmt: skip
        assert len(shown) == 2 and all(int(q.split()[1]) >= 100 for q in shown)
    for e in niv2.render_examples(TASK, "train", num_demos=5):  # training prompts: any other
        i = e.id.split("-")[1]
        assert len(re.findall(rf"Question {i}\b", e.inputs)) == 1  # shown once: as the example
        assert e.inputs.count("\n\n") == 5  # 5 demonstrations before the example
    # a task with too few demonstrations reaches fewer shots, and says so
    small = niv2.NIV2Task("task997_small", "d", (("a", "b"),), TASK.instances[:101])
    assert niv2.render_examples(small, "test", num_demos=5, limit=1)[0].inputs.count("\n\n") == 2


def test_delimiters_and_targets_are_deterministic_per_seed():
    a = niv2.render_examples(TASK, "train", seed=0)
    assert a == niv2.render_examples(TASK, "train", seed=0)
    b = niv2.render_examples(TASK, "train", seed=1)
    assert [e.inputs for e in a] != [e.inputs for e in b]
    used = {d for d in niv2.DELIMITERS for e in a if e.inputs.endswith(d)}  # (Appendix C)
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
    assert [e.id for e in other_val] == [f"o-{e.id.split('-')[1]}" for e in val]
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
    (tmp_path / "tasks" / "task4_dir.json").mkdir()  # used to be reported as "missing"
    with pytest.raises(niv2.TaskFileError, match="task4_dir: task file .* is a directory, not"):
        niv2.load_task("task4_dir", tmp_path)
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
    for name, example in examples.items():  # Appendix C: [Instructions: |Task: ]<definition>
        definition = niv2.load_task(catalog.task(f"optiml:niv2:{name}").source_id).definition
        head = example.inputs.removeprefix("Instructions: ").removeprefix("Task: ")
        assert head.startswith(definition.strip()) and example.targets.startswith(" "), name
    texts = [e.inputs for e in examples.values()] + [e.targets for e in examples.values()]
    ids = vocab.encode_batch(texts)
    assert len(ids) == 2 * 1461
    assert all(len(x) > 0 and min(x) >= 4 for x in ids)  # real text never yields a special id
