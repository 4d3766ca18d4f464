"""FLAN (Wei et al. 2021): the non-inverted FLAN datasets through `seqio.TfdsDataSource`, each
with several instruction templates (FLAN-style, written here; paper A.1 keeps only templates of
the original task). One template is picked per example (seeded), like every multi-template
source; classification tasks list their options FLAN's way and are scored by rank:

    rte  inputs "<premise>\\n\\nBased on the paragraph above can we conclude that
                 \\"<hypothesis>\\"?\\n\\nOPTIONS:\\n- yes\\n- no\\nAnswer:"
         targets " no"   options ("yes", "no")   label 1

`DATASETS` maps each catalog task to (TFDS name, converter, template family). A converter turns
a decoded TFDS example into the family's fields plus `answer` (and `options`). Datasets FLAN
builds from other corpora (fix_punct, true_case, word_segment, unified_qa_science_inst,
trivia_qa_wiki_missing) have no TFDS source here and are reported as absent by name.
Splits: `train` capped at FLAN's 30k (benchmarks.tsv), `validation` (250) and `test` from TFDS
`validation`.
"""

from __future__ import annotations

from collections.abc import Callable

from optiml.bench import catalog
from optiml.bench.sources import common, tfds_util

VARIANTS: dict[str, int] = {}

TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "nli": [
        ('{premise}\n\nBased on the paragraph above can we conclude that "{hypothesis}"?\n\n'
         "{options_}", "{answer}"),
        ("{premise}\n\nCan we draw the following conclusion?\n{hypothesis}\n\n{options_}",
         "{answer}"),
        ("Read the text and determine if the sentence is true:\n\n{premise}\n\nSentence: "
         "{hypothesis}\n{options_}", "{answer}"),
    ],
    "summarize": [
        ("{text}\n\nWhat is a summary of this text?", "{answer}"),
        ("Summarize this article:\n\n{text}", "{answer}"),
        ("Write a short summary for this text: {text}", "{answer}"),
    ],
    "translate": [
        ('Translate "{text}" from {src} to {tgt}.', "{answer}"),
        ("{text}\n\nTranslate to {tgt}", "{answer}"),
        ("Translate the following sentence to {tgt}:\n{text}", "{answer}"),
    ],
    "classify": [  # sentiment, topic, acceptability: {text} and a question about it
        ("{text}\n{question}\n{options_}", "{answer}"),
        ("{question}\n\n{text}\n{options_}", "{answer}"),
        ("Text: {text}\n\n{question}\n{options_}", "{answer}"),
    ],
    "pair": [  # paraphrase / similarity / word sense: two sentences and a question
        ("{sentence1}\n{sentence2}\n\n{question}\n{options_}", "{answer}"),
        ("Sentence 1: {sentence1}\nSentence 2: {sentence2}\n{question}\n{options_}", "{answer}"),
        ("{question}\n\n{sentence1}\n{sentence2}\n{options_}", "{answer}"),
    ],
    "mcqa": [  # reading comprehension / commonsense with options
        ("{context}\n\nQuestion: {question}\n\n{options_}", "{answer}"),
        ("Answer the question about the text:\n\n{context}\n\n{question}\n{options_}", "{answer}"),
        ("{context}\n\nBased on the text above, {question}\n{options_}", "{answer}"),
    ],
    "qa": [  # extractive / reading comprehension, free answer
        ("{context}\n\nQ: {question}\nA:", "{answer}"),
        ("Read this: {context}\n\n{question}\nWhat is the answer?", "{answer}"),
        ("Answer a question about this text:\n{context}\n{question}", "{answer}"),
    ],
    "closed_qa": [
        ("{question}", "{answer}"),
        ("Answer the following question. {question}", "{answer}"),
        ("Question: {question}\nAnswer:", "{answer}"),
    ],
    "closed_mc": [
        ("{question}\n\n{options_}", "{answer}"),
        ("Answer the following question. {question}\n{options_}", "{answer}"),
        ("Question: {question}\n{options_}\nAnswer:", "{answer}"),
    ],
    "data_to_text": [
        ("Generate a sentence about this data: {data}", "{answer}"),
        ("Write a sentence that uses all of the following: {data}", "{answer}"),
        ("Data: {data}\n\nWhat would a sentence about this data be like?", "{answer}"),
    ],
    "complete": [
        ("{context}\n\nWhat is the most logical ending?\n{options_}", "{answer}"),
        ("Continue the following text.\n\n{context}\n{options_}", "{answer}"),
        ("How does the text end?\n\n{context}\n{options_}", "{answer}"),
    ],
    "math": [
        ("Solve {question}", "{answer}"),
        ("Math problem: {question}\nWhat is the solution?", "{answer}"),
        ("{question}\nSolve this problem.", "{answer}"),
    ],
}  # fmt: skip

NLI3 = ["yes", "it is not possible to tell", "no"]
YES_NO = ["yes", "no"]


def _label(options: list[str], key: str = "label") -> Callable[[dict], dict]:
    return lambda r: {"options": options, "answer": options[int(r[key]) % len(options)]}


def _nli(p: str, h: str, options: list[str], key: str = "label"):
    return lambda r: {"premise": r[p], "hypothesis": r[h], **_label(options, key)(r)}


def _summary(text: str, summary: str):
    return lambda r: {"text": _join(r[text]), "answer": _join(r[summary])}


def _join(value) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _classify(text: Callable[[dict], str], question: str, options: list[str], key="label"):
    return lambda r: {"text": text(r), "question": question, **_label(options, key)(r)}


def _pair(s1: str, s2: str, question: str, options: list[str]):
    return lambda r: {"sentence1": r[s1], "sentence2": r[s2], "question": question,
                      **_label(options)(r)}  # fmt: skip


def _translate(src: str, tgt: str, names: dict[str, str]):
    return lambda r: {"text": r[src], "src": names[src], "tgt": names[tgt], "answer": r[tgt]}


def _first(value) -> str:
    return str(value[0]) if isinstance(value, list) and value else _join(value)


def _data(key: str):
    def convert(r: dict) -> dict:
        data = "; ".join(_join(x) for x in r[key]) if isinstance(r[key], list) else str(r[key])
        return {"data": data, "answer": _first(r.get("target") or r.get("references"))}

    return convert


LANG = {"en": "English", "fr": "French", "de": "German", "cs": "Czech", "fi": "Finnish",
        "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "es": "Spanish"}  # fmt: skip


def _arc(r: dict) -> dict:
    options = [str(t) for t in r["choices"]["text"]]
    return {"question": r["question"], "options": options,
            "answer": options[int(r["answerKey"]) % len(options)]}  # fmt: skip


def _obqa(r: dict) -> dict:
    q = r["question"]
    options = [q[f"choice_{c}"] for c in "ABCD"]
    return {"question": q["stem"], "options": options, "answer": options[int(r["answerKey"]) % 4]}


def _mc(
    context: str, question: Callable[[dict], str], options: Callable[[dict], list], key="label"
):
    def convert(r):
        opts = [str(o) for o in options(r)]
        return {"context": _join(r[context]) if context else "", "question": question(r),
                "options": opts, "answer": opts[int(r[key]) % len(opts)]}  # fmt: skip

    return convert


def _qa(context: str, question: str, answer: Callable[[dict], str]):
    return lambda r: {"context": r[context], "question": r[question], "answer": answer(r)}


def _wsc(r: dict) -> dict:
    q = f'In the passage above, does "{r["span2_text"]}" refer to "{r["span1_text"]}"?'
    return {"context": r["text"], "question": q, "options": ["no", "yes"],
            "answer": ["no", "yes"][int(r["label"]) % 2]}  # fmt: skip


def _copa(r: dict) -> dict:
    word = "because" if r["question"] == "cause" else "so"
    options = [r["choice1"], r["choice2"]]
    return {"context": f"{r['premise'].rstrip('.')} {word}...", "options": options,
            "answer": options[int(r["label"]) % 2]}  # fmt: skip


def _coqa(r: dict) -> dict:
    answers = r["answers"]["input_text"] if isinstance(r["answers"], dict) else r["answers"]
    return {"context": r["story"], "question": _first(r["questions"]), "answer": _first(answers)}


# task -> (TFDS name, converter, template family)
DATASETS: dict[str, tuple[str, Callable[[dict], dict], str]] = {
    "aeslc": ("aeslc", _summary("email_body", "subject_line"), "summarize"),
    "ag_news_subset": ("ag_news_subset", _classify(
        lambda r: f"{r['title']}\n\n{r['description']}", "What is this text about?",
        ["World", "Sports", "Business", "Science/Tech"]), "classify"),
    "anli_r1": ("anli/r1", _nli("context", "hypothesis", NLI3), "nli"),
    "anli_r2": ("anli/r2", _nli("context", "hypothesis", NLI3), "nli"),
    "anli_r3": ("anli/r3", _nli("context", "hypothesis", NLI3), "nli"),
    "arc_challenge": ("ai2_arc/ARC-Challenge", _arc, "closed_mc"),
    "arc_easy": ("ai2_arc/ARC-Easy", _arc, "closed_mc"),
    "bool_q": ("bool_q", lambda r: {"context": r["passage"], "question": r["question"] + "?",
               "options": ["no", "yes"], "answer": "yes" if r["answer"] else "no"}, "mcqa"),
    "cb": ("super_glue/cb", _nli("premise", "hypothesis", ["yes", "no", "it is not possible to tell"]), "nli"),  # noqa: E501
    "cnn_dailymail": ("cnn_dailymail", _summary("article", "highlights"), "summarize"),
    "cola": ("glue/cola", _classify(lambda r: r["sentence"], "Is this sentence grammatically acceptable?", ["unacceptable", "acceptable"]), "classify"),  # noqa: E501
    "common_gen": ("gem/common_gen", _data("concepts"), "data_to_text"),
    "copa": ("super_glue/copa", _copa, "complete"),
    "coqa": ("coqa", _coqa, "qa"),
    "cosmos_qa": ("cosmos_qa", _mc("context", lambda r: r["question"], lambda r: [r[f"answer{i}"] for i in range(4)]), "mcqa"),  # noqa: E501
    "dart": ("gem/dart", _data("tripleset"), "data_to_text"),
    "definite_pronoun_resolution": ("definite_pronoun_resolution", _mc("sentence", lambda r: f'Who is "{r["pronoun"]}" in this sentence?', lambda r: r["candidates"]), "mcqa"),  # noqa: E501
    "drop": ("drop", _qa("passage", "question", lambda r: r["answer"]), "qa"),
    "e2e_nlg": ("gem/e2e_nlg", _data("meaning_representation"), "data_to_text"),
    "gigaword": ("gigaword", _summary("document", "summary"), "summarize"),
    "glue_mrpc": ("glue/mrpc", _pair("sentence1", "sentence2", "Do these two sentences mean the same thing?", ["no", "yes"]), "pair"),  # noqa: E501
    "glue_qqp": ("glue/qqp", _pair("question1", "question2", "Are these two questions asking the same thing?", ["no", "yes"]), "pair"),  # noqa: E501
    "hellaswag": ("hellaswag", _mc("context", lambda r: "What happens next?", lambda r: r["endings"]), "complete"),  # noqa: E501
    "imdb_reviews": ("imdb_reviews/plain_text", _classify(lambda r: r["text"], "Is this review positive or negative?", ["negative", "positive"]), "classify"),  # noqa: E501
    "lambada": ("lambada", lambda r: {"context": r["passage"].rsplit(" ", 1)[0], "question": "What is the next word?", "answer": r["passage"].rsplit(" ", 1)[-1]}, "qa"),  # noqa: E501
    "math_dataset": ("math_dataset/algebra__linear_1d", lambda r: {"question": r["question"], "answer": r["answer"]}, "math"),  # noqa: E501
    "mnli": ("glue/mnli", _nli("premise", "hypothesis", NLI3), "nli"),
    "multi_news": ("multi_news", _summary("document", "summary"), "summarize"),
    "multirc": ("super_glue/multirc", lambda r: {"context": r["paragraph"], "question": f'{r["question"]} Is "{r["answer"]}" a correct answer?', **_label(["no", "yes"])(r)}, "mcqa"),  # noqa: E501
    "natural_questions": ("natural_questions_open", lambda r: {"question": r["question"] + "?", "answer": _first(r["answer"])}, "closed_qa"),  # noqa: E501
    "newsroom": ("newsroom", _summary("text", "summary"), "summarize"),
    "openbookqa": ("openbookqa", _obqa, "closed_mc"),
    "opinion_abstracts_idebate": ("opinion_abstracts/idebate", lambda r: {"text": _join(r["_argument_sentences"]["value"]), "answer": r["_claim"]}, "summarize"),  # noqa: E501
    "opinion_abstracts_rotten_tomatoes": ("opinion_abstracts/rotten_tomatoes", lambda r: {"text": _join(r["_critics"]["value"]), "answer": r["_critic_consensus"]}, "summarize"),  # noqa: E501
    "para_crawl_enes": ("para_crawl/enes", _translate("en", "es", LANG), "translate"),
    "paws_wiki": ("paws_wiki", _pair("sentence1", "sentence2", "Are these two sentences paraphrases of each other?", ["no", "yes"]), "pair"),  # noqa: E501
    "piqa": ("piqa", _mc("goal", lambda r: "Which solution is better?", lambda r: [r["sol1"], r["sol2"]]), "mcqa"),  # noqa: E501
    "qnli": ("glue/qnli", _pair("question", "sentence", "Does the sentence answer the question?", ["yes", "no"]), "pair"),  # noqa: E501
    "quac": ("quac", _qa("context", "question", lambda r: _first(r["answers"]["text"])), "qa"),  # noqa: E501
    "record": ("super_glue/record", lambda r: {"context": r["passage"], "question": r["query"].replace("@placeholder", "___") + " What is ___?", "answer": _first(r["answers"]) or "none"}, "qa"),  # noqa: E501
    "rte": ("glue/rte", _nli("sentence1", "sentence2", YES_NO), "nli"),
    "samsum": ("samsum", _summary("dialogue", "summary"), "summarize"),
    "sentiment140": ("sentiment140", _classify(lambda r: r["text"], "What is the sentiment of this tweet?", ["negative", "neutral", "neutral", "neutral", "positive"], "polarity"), "classify"),  # noqa: E501
    "snli": ("snli", _nli("premise", "hypothesis", NLI3), "nli"),
    "squad_v1": ("squad/v1.1", _qa("context", "question", lambda r: _first(r["answers"]["text"])), "qa"),  # noqa: E501
    "squad_v2": ("squad/v2.0", _qa("context", "question", lambda r: _first(r["answers"]["text"]) or "unanswerable"), "qa"),  # noqa: E501
    "sst2": ("glue/sst2", _classify(lambda r: r["sentence"], "What is the sentiment of this sentence?", ["negative", "positive"]), "classify"),  # noqa: E501
    "story_cloze": ("story_cloze/2016", _mc("context", lambda r: "", lambda r: r["endings"]), "complete"),  # noqa: E501
    "stsb": ("glue/stsb", lambda r: {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "question": "How similar are these two sentences, on a scale from 0 to 5?", "options": [str(i) for i in range(6)], "answer": str(min(5, max(0, round(float(r["label"])))))}, "pair"),  # noqa: E501
    "trec": ("trec", _classify(lambda r: r["text"], "What kind of thing would answer this question?", ["description", "entity", "abbreviation", "human", "numeric", "location"], "label-coarse"), "classify"),  # noqa: E501
    "trivia_qa": ("trivia_qa/unfiltered.nocontext", lambda r: {"question": r["question"], "answer": r["answer"]["value"]}, "closed_qa"),  # noqa: E501
    "web_nlg_en": ("gem/web_nlg_en", _data("input"), "data_to_text"),
    "wic": ("super_glue/wic", lambda r: {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "question": f'Does the word "{r["word"]}" mean the same thing in both sentences?', **_label(["no", "yes"])(r)}, "pair"),  # noqa: E501
    "wiki_lingua_english_en": ("gem/wiki_lingua_english_en", lambda r: {"text": r["source"], "answer": r["target"]}, "summarize"),  # noqa: E501
    "winogrande": ("winogrande", _mc("sentence", lambda r: "What is the best option for _?", lambda r: [r["option1"], r["option2"]]), "mcqa"),  # noqa: E501
    "wmt14_enfr": ("wmt14_translate/fr-en", _translate("en", "fr", LANG), "translate"),
    "wmt16_translate_csen": ("wmt16_translate/cs-en", _translate("cs", "en", LANG), "translate"),
    "wmt16_translate_deen": ("wmt16_translate/de-en", _translate("de", "en", LANG), "translate"),
    "wmt16_translate_fien": ("wmt16_translate/fi-en", _translate("fi", "en", LANG), "translate"),
    "wmt16_translate_roen": ("wmt16_translate/ro-en", _translate("ro", "en", LANG), "translate"),
    "wmt16_translate_ruen": ("wmt16_translate/ru-en", _translate("ru", "en", LANG), "translate"),
    "wmt16_translate_tren": ("wmt16_translate/tr-en", _translate("tr", "en", LANG), "translate"),
    "wnli": ("glue/wnli", _nli("sentence1", "sentence2", ["no", "yes"]), "nli"),
    "wsc": ("super_glue/wsc.fixed", _wsc, "mcqa"),
    "xsum": ("xsum", _summary("document", "summary"), "summarize"),
    "yelp_polarity_reviews": ("yelp_polarity_reviews", _classify(lambda r: r["text"], "Is this review positive or negative?", ["negative", "positive"]), "classify"),  # noqa: E501
}  # fmt: skip


def _spec(record: catalog.TaskRecord) -> tuple[str, Callable[[dict], dict], str]:
    if record.task not in DATASETS:
        raise common.SourceDataError(f"FLAN {record.task}: no TFDS source known for this dataset")
    return DATASETS[record.task]


def _cap() -> int:
    return catalog.benchmarks()["flan"].curation_cap


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    """Rendered examples of one split (loader protocol)."""
    del num_demos
    tfds_name, convert, family = _spec(record)
    rank = record.answer_type == "rank"
    out = []
    for i, row in enumerate(tfds_util.rows(f"FLAN {record.task}", tfds_name, split, _cap())):
        fields = {"context": "", "question": "", **convert(row)}
        ranked = rank and bool(fields.get("options"))  # coqa/quac/NQ: free answers, no options
        templates = TEMPLATES[family]
        out.append(tfds_util.render(record.task, str(i), fields, templates, seed=seed, rank=ranked))
    return out


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    tfds_name, _, _ = _spec(record)
    return tfds_util.count(f"FLAN {record.task}", tfds_name, split, _cap())


def make_source(record: catalog.TaskRecord, *, num_demos: int = 0, seed: int = 0):
    return common.function_source(
        record.task, lambda split: examples(record, split, num_demos=num_demos, seed=seed)
    )
