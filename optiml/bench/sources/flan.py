"""FLAN (Wei et al. 2021): the FLAN datasets through `seqio.TfdsDataSource`, each rendered with
FLAN's own templates (`flan_templates`: FLAN 2021's `templates.py` from the data folder, read
as data), input inversions dropped (paper A.1). One template is picked per example (seeded),
like every multi-template source; classification tasks list their options FLAN's way
("OPTIONS:\\n- yes\\n- no") and are scored by rank:

    rte  inputs "<premise>\\n\\nBased on the paragraph above can we conclude that
                 \\"<hypothesis>\\"?\\n\\nOPTIONS:\\n- yes\\n- no\\nAnswer:"
         targets " no"   options ("yes", "no")   label 1

`DATASETS` maps each catalog task to (TFDS name, converter, FLAN pattern name). A converter turns
a decoded TFDS example into the fields FLAN's preprocessors make (google-research/FLAN
`flan/tasks.py`: same names, same option lists), with `options` for classification. `#5shot`
puts 5 of the task's training examples before the example, each rendered with the example's
template and delimiter and followed by its answer, separated by blank lines (paper §2.4).
Splits: `train` capped at FLAN's 30k (benchmarks.tsv), `validation` (250) and `test` from TFDS
`validation`. The templates file: `templates="v1"` (default; "v2" for Flan 2022, or a path).

Evaluation example ids name their template, `<row>|template <j>` (j: its place in FLAN's list),
so template selection (`optiml.evaluation.prompt_selection`) can rank them; the source redraws
each row's template among the chosen ones (`common.TemplateDraw`). `#retrieved_5shot` shows the
5 training rows whose prompts BM25 ranks first for the example's (`retrieval`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from optiml.bench import catalog
from optiml.bench.sources import common, flan_templates, retrieval, tfds_util

VARIANTS = {"5shot": 5}
FORMAT_VARIANTS = retrieval.FORMAT_VARIANT  # `#retrieved_5shot`: BM25-retrieved demonstrations
TEMPLATES = "v1"  # FLAN 2021's templates.py in $OPTIML_DATA_DIR/flan/templates/


def _choice(options: list[str], label) -> dict:
    options = [str(o) for o in options]
    return {"options": options, "answer": options[int(label) % len(options)]}


def _first(value) -> str:
    return str(value[0]) if isinstance(value, list) and value else str(value)


def _numbered(items) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, start=1))


def _translate(lang2: str, key2: str):
    return lambda r: {"lang1": "English", "lang2": lang2, "sent1": r["en"], "sent2": r[key2]}


def _pair(a: str, b: str, options: list[str], key: str = "label"):
    return lambda r: {a: r[a], b: r[b], **_choice(options, r[key])}


def _classify(text: Callable[[dict], str], options: list[str], key: str = "label"):
    return lambda r: {"text": text(r), **_choice(options, r[key])}


def _summary(text: str, summary: str, **extra: str):
    return lambda r: {"text": r[text], "summary": r[summary], **{k: r[v] for k, v in extra.items()}}


def _wsc273(r: dict) -> dict:
    prefix = r["text"][: r["pronoun_start"]].strip()
    suffix = r["text"][r["pronoun_end"] :].strip()
    options = [f"{r['option1_normalized']} {suffix}", f"{r['option2_normalized']} {suffix}"]
    return {"context": prefix, **_choice(options, r["label"])}


def _record(r: dict) -> dict:
    left, _, right = r["query"].partition("@placeholder")
    options = [e + right for e in r["entities"]]
    answer = (_first(r["answers"]) + right) if r["answers"] else options[0]
    return {"passage": r["passage"].split("\n@highlight")[0], "query": left.strip(),
            "options_str": "OPTIONS:\n- " + "\n- ".join(options), "answer": answer}  # fmt: skip


def _winogrande(r: dict) -> dict:
    context, _, rest = r["sentence"].partition("_")
    return {"context": context, **_choice([r["option1"] + rest, r["option2"] + rest], r["label"])}


def _hellaswag(r: dict) -> dict:
    context = re.sub(r"\[header\]\s", "", r["context"])
    context = re.sub(r"\[.*?\]\s", "\n", context)
    endings = [re.sub(r"\[.*?\]\s", "", e) for e in r["endings"]]
    return {"context": context, **_choice(endings, r["label"])}


def _cnn(r: dict) -> dict:
    article = r["article"]
    for sep in ("2013 . ", "2014 . ", "2012 . ", ") -- "):
        article = article.split(sep, 1)[-1]
    return {"text": article, "highlights": r["highlights"]}


def _dart(r: dict) -> dict:
    triples = [str(t) for t in r["tripleset"]]
    return {"tripleset": re.sub(r"\[(.*?)\]", "", "; ".join(triples)),
            "tripleset_newline": "\n".join(triples), "target": r["target"]}  # fmt: skip


def _stsb(r: dict) -> dict:
    score = f"{float(r['label']):.0f}"
    return {"sentence1": r["sentence1"], "sentence2": r["sentence2"],
            "options": [str(i) for i in range(6)], "answer_str": score}  # fmt: skip


NLI3 = ["yes", "it is not possible to tell", "no"]
SENTIMENT = ["negative", "positive"]

# task -> (TFDS name, converter, FLAN pattern name); fields and options as FLAN's tasks.py has them
DATASETS: dict[str, tuple[str, Callable[[dict], dict], str]] = {
    "aeslc": ("aeslc", lambda r: {"body": r["email_body"].replace("\n", " "), "subject": r["subject_line"].replace("\n", "")}, "aeslc"),  # noqa: E501
    "ag_news_subset": ("ag_news_subset", lambda r: {"title": r["title"], "text": r["description"], **_choice(["World", "Sports", "Business", "Science/Tech"], r["label"])}, "ag_news_subset"),  # noqa: E501
    "anli_r1": ("anli/r1", _pair("context", "hypothesis", ["Yes", "It's impossible to say", "No"]), "anli"),  # noqa: E501
    "anli_r2": ("anli/r2", _pair("context", "hypothesis", ["Yes", "It's impossible to say", "No"]), "anli"),  # noqa: E501
    "anli_r3": ("anli/r3", _pair("context", "hypothesis", ["Yes", "It's impossible to say", "No"]), "anli"),  # noqa: E501
    "arc_challenge": ("ai2_arc/ARC-Challenge", lambda r: {"question": r["question"], **_choice(r["choices"]["text"], r["answerKey"])}, "arc"),  # noqa: E501
    "arc_easy": ("ai2_arc/ARC-Easy", lambda r: {"question": r["question"], **_choice(r["choices"]["text"], r["answerKey"])}, "arc"),  # noqa: E501
    "bool_q": ("bool_q", lambda r: {"title": r["title"], "text": r["passage"], "question": r["question"], **_choice(["no", "yes"], r["answer"])}, "bool_q"),  # noqa: E501
    "cb": ("super_glue/cb", _pair("premise", "hypothesis", ["Yes", "No", "It's impossible to say"]), "cb"),  # noqa: E501
    "cnn_dailymail": ("cnn_dailymail", _cnn, "cnn_dailymail"),
    "cola": ("glue/cola", lambda r: {"sentence": r["sentence"], **_choice(["unacceptable", "acceptable"], r["label"])}, "cola"),  # noqa: E501
    "common_gen": ("gem/common_gen", lambda r: {"concepts": ", ".join(r["concepts"]), "concepts_newline": "\n".join(r["concepts"]), "target": r["target"]}, "common_gen"),  # noqa: E501
    "copa": ("super_glue/copa", lambda r: {"premise": r["premise"], "question": r["question"], **_choice([r["choice1"], r["choice2"]], r["label"])}, "copa"),  # noqa: E501
    "coqa": ("coqa", lambda r: {"text": r["story"], "numbered_questions": _numbered(r["questions"]), "numbered_answers": _numbered(r["answers"]["input_text"])}, "coqa"),  # noqa: E501
    "cosmos_qa": ("cosmos_qa", lambda r: {"context": r["context"], "question": r["question"], **_choice([r[f"answer{i}"] for i in range(4)], r["label"])}, "cosmos_qa"),  # noqa: E501
    "dart": ("gem/dart", _dart, "dart"),
    "definite_pronoun_resolution": ("definite_pronoun_resolution", lambda r: {"sentence": r["sentence"], "pronoun": r["pronoun"], **_choice(r["candidates"], r["label"])}, "definite_pronoun_resolution"),  # noqa: E501
    "drop": ("drop", lambda r: {"context": r["passage"], "question": r["question"], "answer": r["answer"]}, "drop"),  # noqa: E501
    "e2e_nlg": ("gem/e2e_nlg", lambda r: {"meaning_representation": r["meaning_representation"].replace("[", " = ").replace("]", ""), "target": r["target"]}, "e2e_nlg"),  # noqa: E501
    "fix_punct": ("para_crawl/enda", lambda r: {"no_punct": re.sub(r"[^\w\s]", "", r["en"]), "answer": r["en"]}, "fix_punct"),  # noqa: E501
    "gigaword": ("gigaword", _summary("document", "summary"), "gigaword"),
    "glue_mrpc": ("glue/mrpc", _pair("sentence1", "sentence2", ["no", "yes"]), "glue_mrpc"),
    "glue_qqp": ("glue/qqp", lambda r: {"question1": r["question1"].replace('""', "'"), "question2": r["question2"].replace('""', "'"), **_choice(["no", "yes"], r["label"])}, "glue_qqp"),  # noqa: E501
    "hellaswag": ("hellaswag", _hellaswag, "hellaswag"),
    "imdb_reviews": ("imdb_reviews/plain_text", _classify(lambda r: r["text"].replace("<br />", "\n"), SENTIMENT), "imdb_reviews"),  # noqa: E501
    "lambada": ("lambada", lambda r: {"text": r["passage"]}, "lambada"),  # no FLAN 2021 template
    "math_dataset": ("math_dataset/algebra__linear_1d", lambda r: {"question": r["question"], "answer": r["answer"]}, "math_dataset"),  # noqa: E501
    "mnli": ("glue/mnli", _pair("premise", "hypothesis", NLI3), "mnli"),
    "multi_news": ("multi_news", _summary("document", "summary"), "multi_news"),
    "multirc": ("super_glue/multirc", lambda r: {"paragraph": r["paragraph"], "question": r["question"], "response": r["answer"], **_choice(["no", "yes"], r["label"])}, "multirc"),  # noqa: E501
    "natural_questions": ("natural_questions_open", lambda r: {"question": r["question"] + "?", "answer": _first(r["answer"])}, "natural_questions"),  # noqa: E501
    "newsroom": ("newsroom", _summary("text", "summary", title="title"), "newsroom"),
    "openbookqa": ("openbookqa", lambda r: {"question": r["question"]["stem"], "fact": r["fact1"], **_choice([r["question"][f"choice_{c}"] for c in "ABCD"], r["answerKey"])}, "openbookqa"),  # noqa: E501
    "opinion_abstracts_idebate": ("opinion_abstracts/idebate", lambda r: {"claim": r["_claim"], "debate_name": r["_debate_name"], "argument_sentences": _numbered(r["_argument_sentences"]["value"][:10])}, "opinion_abstracts_idebate"),  # noqa: E501
    "opinion_abstracts_rotten_tomatoes": ("opinion_abstracts/rotten_tomatoes", lambda r: {"critic_consensus": r["_critic_consensus"], "movie": r["_movie_name"].replace("_", " "), "first_review": r["_critics"]["value"][0], "numbered_reviews": _numbered(r["_critics"]["value"][:10])}, "opinion_abstracts_rotten_tomatoes"),  # noqa: E501
    "para_crawl_enes": ("para_crawl/enes", _translate("Spanish", "es"), "para_crawl"),
    "paws_wiki": ("paws_wiki", _pair("sentence1", "sentence2", ["no", "yes"]), "paws_wiki"),
    "piqa": ("piqa", lambda r: {"goal": r["goal"], **_choice([r["sol1"], r["sol2"]], r["label"])}, "piqa"),  # noqa: E501
    "qnli": ("glue/qnli", _pair("question", "sentence", ["yes", "no"]), "qnli"),
    "quac": ("quac", lambda r: {"title": r["title"], "background": r["background"], "context": r["context"], "question": r["question"], "answer": _first(r["orig_answer"]["text"])}, "quac"),  # noqa: E501
    "record": ("super_glue/record", _record, "record"),
    "rte": ("super_glue/rte", _pair("premise", "hypothesis", ["yes", "no"]), "rte"),
    "samsum": ("samsum", lambda r: {"summary": r["summary"], "dialogue": re.sub("<.*>", " ", r["dialogue"].replace("\r\n", "\n"))}, "samsum"),  # noqa: E501
    "sentiment140": ("sentiment140", lambda r: {"text": r["text"], **_choice(SENTIMENT, int(r["polarity"]) in (3, 4))}, "sentiment140"),  # noqa: E501
    "snli": ("snli", _pair("premise", "hypothesis", NLI3), "snli"),
    "squad_v1": ("squad/v1.1", lambda r: {"title": r["title"].replace("_", " "), "context": r["context"], "question": r["question"], "answer": _first(r["answers"]["text"])}, "squad_v1"),  # noqa: E501
    "squad_v2": ("squad/v2.0", lambda r: {"title": r["title"].replace("_", " "), "context": r["context"], "question": r["question"], "answer": _first(r["answers"]["text"]) if r["answers"]["text"] else "unanswerable"}, "squad_v2"),  # noqa: E501
    "sst2": ("glue/sst2", lambda r: {"sentence": r["sentence"], **_choice(SENTIMENT, r["label"])}, "sst2"),  # noqa: E501
    "story_cloze": ("story_cloze/2016", lambda r: {"context": r["context"], **_choice(r["endings"], int(r["label"]) - 1)}, "story_cloze"),  # noqa: E501
    "stsb": ("glue/stsb", _stsb, "stsb"),
    "trec": ("trec", _classify(lambda r: r["text"], ["description", "entity", "abbreviation", "human", "numeric", "location"], "label-coarse"), "trec"),  # noqa: E501
    "trivia_qa": ("trivia_qa/rc", lambda r: {"question": r["question"], "answer": r["answer"]["normalized_value"]}, "trivia_qa"),  # noqa: E501
    "true_case": ("para_crawl/enda", lambda r: {"lower": r["en"].lower(), "answer": r["en"]}, "true_case"),  # noqa: E501
    "web_nlg_en": ("gem/web_nlg_en", lambda r: {"input_string": "; ".join(r["input"]).replace("_", " ").replace(" | ", ", "), "target": r["target"]}, "web_nlg_en"),  # noqa: E501
    "wic": ("super_glue/wic", lambda r: {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "word": r["word"], **_choice(["different meanings", "the same meaning"], r["label"])}, "wic"),  # noqa: E501
    "wiki_lingua_english_en": ("gem/wiki_lingua_english_en", lambda r: {"source": r["source"], "target": r["target"]}, "wiki_lingua_english_en"),  # noqa: E501
    "winogrande": ("winogrande", _winogrande, "winogrande"),
    "wmt14_enfr": ("wmt14_translate/fr-en", _translate("French", "fr"), "wmt14_enfr"),
    "wmt16_translate_csen": ("wmt16_translate/cs-en", _translate("Czech", "cs"), "wmt16_translate"),  # noqa: E501
    "wmt16_translate_deen": ("wmt16_translate/de-en", _translate("German", "de"), "wmt16_translate"),  # noqa: E501
    "wmt16_translate_fien": ("wmt16_translate/fi-en", _translate("Finnish", "fi"), "wmt16_translate"),  # noqa: E501
    "wmt16_translate_roen": ("wmt16_translate/ro-en", _translate("Romanian", "ro"), "wmt16_translate"),  # noqa: E501
    "wmt16_translate_ruen": ("wmt16_translate/ru-en", _translate("Russian", "ru"), "wmt16_translate"),  # noqa: E501
    "wmt16_translate_tren": ("wmt16_translate/tr-en", _translate("Turkish", "tr"), "wmt16_translate"),  # noqa: E501
    "wnli": ("glue/wnli", _pair("sentence1", "sentence2", ["no", "yes"]), "wnli"),
    "word_segment": ("para_crawl/enda", lambda r: {"no_space": r["en"].replace(" ", ""), "answer": r["en"]}, "word_segment"),  # noqa: E501
    "wsc": ("super_glue/wsc.fixed", lambda r: {"context": r["text"], "text1": r["span1_text"], "text2": r["span2_text"], **_choice(["no", "yes"], r["label"])}, "wsc"),  # noqa: E501
    "xsum": ("xsum", _summary("document", "summary"), "xsum"),
    "yelp_polarity_reviews": ("yelp_polarity_reviews", _classify(lambda r: r["text"].replace('\\""', '"').replace("\\n", " "), SENTIMENT), "yelp_polarity_reviews"),  # noqa: E501
}  # fmt: skip


def _spec(record: catalog.TaskRecord) -> tuple[str, Callable[[dict], dict], str]:
    if record.task not in DATASETS:
        raise common.SourceDataError(f"FLAN {record.task}: no TFDS source known for this dataset")
    return DATASETS[record.task]


def named_templates(
    record: catalog.TaskRecord,
    version: str = TEMPLATES,
    *,
    inversions: bool = False,
    options_shown: bool = True,
) -> list[tuple[str, flan_templates.Template]]:
    """The task's FLAN templates from the templates file `version`, each named by its place in
    FLAN's list for the dataset ("template 0", ..., "template 9"): those of the original task
    (paper A.1), or every one with `inversions` (Flan 2022 trains on its input inversions too);
    without the options slot unless `options_shown` (`flan_templates.without_options`)."""
    _, _, key = _spec(record)
    patterns = flan_templates.read_patterns(flan_templates.templates_file(version))
    if key not in patterns:
        raise common.SourceDataError(f"FLAN {record.task}: no {key!r} templates in {version}")
    kept = patterns[key] if inversions else flan_templates.original_templates(patterns[key])
    show = (lambda t: t) if options_shown else flan_templates.without_options
    return [(f"template {j}", show(t)) for j, t in enumerate(patterns[key]) if t in kept]


def templates(
    record: catalog.TaskRecord,
    version: str = TEMPLATES,
    *,
    inversions: bool = False,
    options_shown: bool = True,
) -> list[flan_templates.Template]:
    """`named_templates` without their names."""
    named = named_templates(record, version, inversions=inversions, options_shown=options_shown)
    return [t for _, t in named]


def _cap() -> int:
    return catalog.benchmarks()["flan"].curation_cap


def _rows(record: catalog.TaskRecord, split: str) -> list[dict]:
    tfds_name, convert, _ = _spec(record)
    return [convert(r) for r in tfds_util.rows(f"FLAN {record.task}", tfds_name, split, _cap())]


def _fill(pattern: str, fields: dict) -> str:
    options = fields.get("options") or []
    return pattern.format(**fields, options_=flan_templates.options_block(options)).strip()


def examples(
    record: catalog.TaskRecord,
    split: str,
    *,
    num_demos: int = 0,
    seed: int = 0,
    templates_version: str = TEMPLATES,
    inversions: bool = False,
    options_shown: bool = True,
    demos: str = retrieval.MODES[0],
    only_templates: Sequence[str] = (),
) -> list[common.Example]:
    """Rendered examples of one split (loader protocol; module docstring); `inversions` and
    `options_shown` choose the templates (`templates`: Flan 2022's prompt styles);
    `only_templates` (names) draws each row's template among those only (template selection);
    `demos="retrieved"`: demonstrations are the training rows whose prompts (under the
    example's template) BM25 ranks first for the example's prompt (`retrieval`)."""
    retrieval.check_mode(demos)
    chosen = named_templates(
        record, templates_version, inversions=inversions, options_shown=options_shown
    )
    if only_templates:
        unknown = sorted(set(only_templates) - {name for name, _ in chosen})
        if unknown:
            raise ValueError(f"FLAN {record.task}: no template named {unknown}")
        chosen = [(name, t) for name, t in chosen if name in only_templates]
    answers = {t for _, t in templates(record, templates_version)}  # the task's own targets
    rows = _rows(record, split)
    pool = (_rows(record, "train") if split != "train" else rows) if num_demos else []
    # the evaluated rows are the pool in training, and where an evaluation task without
    # evaluation rows is tested on its train rows (common.split_rows)
    same = split == "train" or pool == rows
    retrievers: dict[str, retrieval.Retriever] = {}  # template name -> BM25 over its pool prompts
    out = []
    for i, fields in enumerate(rows):
        name, (prompt_t, target_t) = chosen[
            common.pick(seed, len(chosen), "template", record.task, i)
        ]
        delimiter = common.pick_delimiter(seed, record.task, str(i))
        prompt = _fill(prompt_t, fields)
        if num_demos and demos == retrieval.RETRIEVED:  # never the example itself
            if name not in retrievers:
                keys = [str(j) for j in range(len(pool))]
                retrievers[name] = retrieval.Retriever([_fill(prompt_t, d) for d in pool], keys)
            top = retrievers[name].top(prompt, num_demos, str(i) if same else None)
            shown = [pool[j] for j in top]
        else:
            others = [d for j, d in enumerate(pool) if not (same and j == i)]  # not the example
            shown = common.demonstrations(others, num_demos, seed, record.task, str(i))
        shown = [
            f"{common.delimited(_fill(prompt_t, d), delimiter)} {_fill(target_t, d)}" for d in shown
        ] + [common.delimited(prompt, delimiter)]
        options = fields.get("options") if record.answer_type == "rank" else None
        options = options if target_t in answers else None  # an inversion answers otherwise
        out.append(
            common.make_example(
                record.task,
                str(i) if split == "train" else f"{i}{common.TEMPLATE_SEPARATOR}{name}",
                common.DEMO_SEPARATOR.join(shown),
                _fill(target_t, fields),
                seed=seed,
                options=options or (),
                delimiter=False,
            )  # fmt: skip
        )
    return out


def reachable_shots(record: catalog.TaskRecord, split: str, k: int, demos: str = "") -> int:
    """Demonstrations a k-shot prompt gets (loader protocol): the task's training examples
    (retrieved or seeded)."""
    del demos
    return min(k, count_examples(record, "train") - (split == "train"))


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    """Exact examples of one split (loader protocol); a task without templates has none."""
    tfds_name, _, _ = _spec(record)
    templates(record)
    return tfds_util.count(f"FLAN {record.task}", tfds_name, split, _cap())


_source = common.lazy_source(examples)


def make_source(record: catalog.TaskRecord, *, num_demos: int = 0, seed: int = 0, **options):
    """A lazy seqio source (loader protocol) that can redraw its templates among some of them
    (`common.TemplateDraw`: template selection keeps every row, rendered with a chosen one)."""

    def names() -> tuple[str, ...]:
        keep = {k: v for k, v in options.items() if k in ("inversions", "options_shown")}
        version = options.get("templates_version", TEMPLATES)
        return tuple(name for name, _ in named_templates(record, version, **keep))

    def among(chosen: Sequence[str]):
        return make_source(
            record, num_demos=num_demos, seed=seed, **{**options, "only_templates": tuple(chosen)}
        )

    source = _source(record, num_demos=num_demos, seed=seed, **options)
    return common.drawing_templates(source, common.TemplateDraw(names, among))
