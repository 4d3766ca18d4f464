"""How scoring lays examples out in rows (`optiml.evaluation.rows`): when options share a prompt
and prompts a prefix, how segments pack into rows, the arrays `score_branches` gets, and the
padded lengths. That the scores equal scoring each full row is in test_inference.py."""

from __future__ import annotations

from optiml.evaluation import rows
from optiml.models import opt

CONFIG = opt.named_config("tiny", dtype="float32", dropout=0.0, max_positions=64)  # d 64, f 256


def test_options_share_a_prompt_only_when_it_costs_less() -> None:
    letters = rows.prompts((2, 5, 6, 7), [(i, (10 + i,)) for i in range(4)], CONFIG, share=True)
    assert len(letters) == 1 and letters[0].length == 4 and letters[0].scored == 4
    long = [(0, tuple(range(40))), (1, tuple(range(100, 140)))]
    shared = rows.Prompt((2, 17), tuple(long))
    assert shared.length == 2 + 39 + 39
    assert rows.cost(shared.length, CONFIG) > 2 * rows.cost(2 + 39, CONFIG)  # 146.7 > 117.0
    assert len(rows.prompts((2, 17), long, CONFIG, share=True)) == 2
    assert len(rows.prompts((2, 5, 6, 7), [(0, (9,)), (1, (8,))], CONFIG, share=False)) == 2


def test_options_that_begin_alike_leave_their_common_tokens_to_the_prompt() -> None:
    options = [(0, (5, 6, 7, 2)), (1, (5, 6, 8)), (2, (5, 6, 7, 9, 2))]
    (p,) = rows.prompts((2, 9), options, CONFIG, share=True, lead_owner=3)
    assert p == rows.Prompt((2, 9, 5, 6), ((0, (7, 2)), (1, (8,)), (2, (7, 9, 2))), (3, (5, 6)))
    assert p.length == 4 + 1 + 0 + 2 and p.scored == 2 + 2 + 1 + 3  # 7 and 12 without the lead
    # every option keeps a token; one option alone, or no common first token, has no lead
    (q,) = rows.prompts((2, 9), [(0, (5, 6)), (1, (5, 6, 7))], CONFIG, share=True, lead_owner=2)
    assert q.lead == (2, (5,)) and q.options == ((0, (6,)), (1, (6, 7)))
    assert rows.prompts((2, 9), [(0, (5, 6))], CONFIG, True, 1)[0].lead is None
    assert rows.prompts((2, 9), options, CONFIG, share=True)[0].lead is None  # no owner given
    assert rows.prompts((2, 9), [(0, (5,)), (1, (6, 5))], CONFIG, True, 2)[0].lead is None
    assert all(p.lead is None for p in rows.prompts((2, 9), options, CONFIG, False, 3))


def test_prompts_that_begin_alike_share_their_prefix_when_it_costs_less() -> None:
    header = (2, *range(100, 120))  # 21 tokens, then each question's own
    items = [rows.Prompt((*header, 7, 8, 9)[: 21 + n], ((n, (5,)),)) for n in (3, 1, 2)]
    other = rows.Prompt((2, 300, 301), ((9, (5,)),))  # shares only BOS: packed, not joined
    (joined, alone) = rows.segments([*items, other], CONFIG)
    assert joined.shared == 21 + 1 and [len(p.tokens) for p in joined.prompts] == [22, 23, 24]
    assert joined.length == 22 + 0 + 1 + 2  # the 22-token prompt is all prefix
    assert alone == rows.Segment(3, (other,))
    # within a packed row joining saves tokens; past it, a short common prefix saves less than
    # the longer row's attention costs
    tails = [rows.Prompt((2, 3, *range(k, k + 30)), ((k, (5,)),)) for k in (1000, 2000)]
    assert len(rows.segments(tails, CONFIG)) == 1  # 62 tokens
    tails = [rows.Prompt((2, 3, *range(k, k + 40)), ((k, (5,)),)) for k in (1000, 2000)]
    assert len(rows.segments(tails, CONFIG)) == 2


def test_segments_never_exceed_max_positions() -> None:
    header = (2, *range(100, 130))
    items = [rows.Prompt((*header, 500 + k, 7), ((k, (5,)),)) for k in range(20)]
    out = rows.segments(items, CONFIG)
    assert all(s.length <= CONFIG.max_positions for s in out) and len(out) > 1
    assert [p for s in out for p in s.prompts] == sorted(items, key=lambda p: p.tokens)


def test_pack_fills_each_batch_to_its_longest_segment() -> None:
    def segment(n: int) -> rows.Segment:
        return rows.Segment(n, (rows.Prompt(tuple(range(n)), ((n, (1,)),)),))

    batches = rows.pack([segment(n) for n in (10, 40, 30, 20, 70)], 64, batch=2)
    lengths = [[[s.length for s in row] for row in batch] for batch in batches]
    assert lengths == [[[70], [40, 30]], [[20, 10]]]  # rows of 72 (bucketed 70), then of 64
    sizes = {n: rows.row_length(opt.named_config(n)) for n in ("125m", "1.3b", "175b")}
    assert rows.row_length(CONFIG) == 64 and sizes == {"125m": 64, "1.3b": 160, "175b": 960}


def test_lay_out_positions_masks_and_selected_positions() -> None:
    """Row: prefix (2, 5); prompt (2, 5, 8) with options (9, 4) and (6,); prompt (2, 5) with
    option (3, 4); then a segment of its own, prompt (2, 7) with option (1,)."""
    first = rows.Segment(
        2,
        (
            rows.Prompt((2, 5, 8), ((0, (9, 4)), (1, (6,)))),
            rows.Prompt((2, 5), ((2, (3, 4)),)),
        ),
    )
    second = rows.Segment(2, (rows.Prompt((2, 7), ((3, (1,)),)),))
    out = rows.lay_out([[first, second]], batch=2, length=8, scored=8)
    assert out["tokens"][0].tolist() == [2, 5, 8, 9, 3, 2, 7, 1]
    assert out["positions"][0].tolist() == [0, 1, 2, 3, 2, 0, 1, 0]
    assert out["segments"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, -1]
    assert out["prompts"][0].tolist() == [0, 0, 1, 1, 2, 0, 0, 0]
    assert out["branches"][0].tolist() == [0, 0, 0, 1, 3, 0, 0, 0]  # (6,) is branch 2
    # (9, 4) from 8's and 9's columns, 6 from 8's, (3, 4) from the prefix's last and 3's, 1 from 7
    assert out["select"][0].tolist()[:6] == [2, 3, 2, 1, 4, 6]
    assert out["targets"][0].tolist()[:6] == [9, 4, 6, 3, 4, 1]
    assert out["owners"][0].tolist() == [0, 0, 1, 2, 2, 3, -1, -1]
    assert (out["owners"][1] == -1).all() and (out["segments"][1] == -1).all()  # a dummy row


def test_lay_out_scores_a_lead_once_from_the_prefix_and_the_prompt() -> None:
    """Prompts (2, 5, 8, 3) and (2, 5, 8, 4) with the leads (8, 3) and (8, 4), in a segment of
    prefix (2, 5, 8): each lead is predicted at the prefix's columns of 5 and 8, each option's
    first token at its prompt's own last column (3's, 4's)."""
    first = rows.Prompt((2, 5, 8, 3), ((0, (1,)), (1, (6,))), (10, (8, 3)))
    second = rows.Prompt((2, 5, 8, 4), ((2, (1, 7)), (3, (6, 7))), (11, (8, 4)))
    segment = rows.Segment(3, (first, second))
    assert segment.length == 3 + 1 + 1 + 1 + 1 and segment.scored == 4 + 6
    out = rows.lay_out([[segment]], batch=1, length=8, scored=10)
    assert out["tokens"][0].tolist() == [2, 5, 8, 3, 4, 1, 6, 1]  # padding at 7 is PAD_ID=1
    assert out["prompts"][0].tolist() == [0, 0, 0, 1, 2, 2, 2, 0]
    assert out["branches"][0].tolist() == [0, 0, 0, 0, 0, 3, 4, 0]
    assert out["select"][0].tolist() == [1, 2, 3, 3, 1, 2, 4, 5, 4, 6]
    assert out["targets"][0].tolist() == [8, 3, 1, 6, 8, 4, 1, 7, 6, 7]
    assert out["owners"][0].tolist() == [10, 10, 0, 1, 11, 11, 2, 2, 3, 3]


def test_bucket_bounds_padding_and_shapes() -> None:
    assert [rows.bucket(n) for n in (1, 8, 9, 64, 65, 128, 129, 2000)] == [
        8, 8, 16, 64, 72, 128, 144, 2048,
    ]  # fmt: skip
    assert all(n <= rows.bucket(n) <= max(n * 9 / 8, n + 7) for n in range(1, 3000))
    assert len({rows.bucket(n) for n in range(1, 2049)}) == 8 * 6  # 8 to 64, 5 octaves
