"""lit_gpt/quality/scoring.py: the resumable score cache and the filtering rules."""

import re

import pytest

from lit_gpt.quality.scored_records import ScoringExample, scoring_example
from lit_gpt.quality.scoring import ScoreCache, score_examples, select_longest, select_rows
from lit_gpt.utils import UserError


# ---- resumable cache -------------------------------------------------------------------------------------------------
class CountingScorer:
    def __init__(self):
        self.seen = []

    def score(self, batch):
        self.seen += [e.index for e in batch]
        return [{"score": float(len(e.output) % 6)} for e in batch]


def test_score_cache_resumes_and_detects_changes(tmp_path, alpaca_rows):
    examples = [scoring_example(i, row) for i, row in enumerate(alpaca_rows[:20])]
    path = tmp_path / "out.json.alpagasus.scores.jsonl"
    scorer = CountingScorer()
    partial = score_examples(examples, scorer, ScoreCache(path, "alpagasus", {"k": 1}), batch_size=3, limit=7)
    assert sorted(partial) == list(range(7)) and sorted(scorer.seen) == list(range(7))
    with open(path, "a") as f:
        f.write('{"index": 9, "hash": "abc", "res')  # the line being written when the run was killed
    scorer = CountingScorer()
    examples[2] = ScoringExample(2, examples[2].instruction, "", "changed output")  # edited row: scored again
    full = score_examples(examples, scorer, ScoreCache(path, "alpagasus", {"k": 1}), batch_size=3)
    assert sorted(scorer.seen) == [2] + list(range(7, 20))
    assert sorted(full) == list(range(20)) and full[2]["score"] == float(len("changed output") % 6)
    with pytest.raises(UserError, match="other settings"):
        ScoreCache(path, "alpagasus", {"k": 2})
    assert ScoreCache(path, "alpagasus", {"k": 2}, restart=True).done == {}


def test_score_cache_reads_its_sidecar_as_json_lines(tmp_path):
    """A result holding U+2028 (written raw: ensure_ascii=False) is one entry; a broken line in the middle names
    file:LINE."""
    path = tmp_path / "out.jsonl.heuristics.scores.jsonl"
    example = ScoringExample(0, "Say hi.", "", "hi")
    ScoreCache(path, "heuristics", {}).add([example], [{"score": 1, "flags": ["a\u2028b"]}])
    assert ScoreCache(path, "heuristics", {}).get(example) == {"score": 1, "flags": ["a\u2028b"]}
    path.write_text(path.read_text(encoding="utf-8") + '{"index": 1, "hash"\n{"index": 2}\n', encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"{path}:3: not valid JSON")):
        ScoreCache(path, "heuristics", {})
    path.write_text("\n".join(path.read_text(encoding="utf-8").split("\n")[:2] + ['{"index": 2}', ""]))
    with pytest.raises(UserError, match=re.escape(f"{path}:3: not a score entry")):
        ScoreCache(path, "heuristics", {})


# ---- filtering rule --------------------------------------------------------------------------------------------------
def test_select_rows_rules():
    rows = [{"score_alpagasus": s} for s in [5.0, 4.5, 3.0, None, 4.9, 4.5, 2.0, 4.0]]
    kept, dropped = select_rows(rows, "alpagasus", min_score=4.5)
    assert kept == [0, 1, 4, 5] and dropped == {"below_min_score": [2, 6, 7], "unscored": [3]}
    kept, dropped = select_rows(rows, "alpagasus", top_fraction=0.25)  # round(0.25 * 8) = 2
    assert kept == [0, 4] and dropped["below_top_fraction"] == [1, 5, 7, 2, 6]
    kept, _ = select_rows(rows, "alpagasus", top_fraction=0.5)  # tie at 4.5: the earlier row wins
    assert kept == [0, 1, 4, 5]
    kept, dropped = select_rows(rows, "alpagasus", top_fraction=0.25, max_score=4.9)
    assert kept == [1, 4]
    assert dropped["above_max_score"] == [0]
    kept, dropped = select_rows(rows, "alpagasus", top_count=3)  # 5.0, 4.9 and the first 4.5
    assert kept == [0, 1, 4] and dropped["below_top_count"] == [5, 7, 2, 6]
    with pytest.raises(UserError, match="exactly one"):
        select_rows(rows, "alpagasus", min_score=4, top_fraction=0.1)
    with pytest.raises(UserError, match="exactly one"):
        select_rows(rows, "alpagasus", top_count=2, top_fraction=0.1)
    with pytest.raises(UserError, match="--top_count 0"):
        select_rows(rows, "alpagasus", top_count=0)
    with pytest.raises(UserError, match="score_ifd"):
        select_rows(rows, "ifd", min_score=1)
    flagged = [{"heuristics_pass": 1, "heuristics_flags": []}, {"heuristics_pass": 0, "heuristics_flags": ["refusal"]},
               {"heuristics_pass": 0, "heuristics_flags": ["too_short", "repeated_chars"]}]
    kept, dropped = select_rows(flagged, "heuristics")
    assert kept == [0] and dropped == {"refusal": [1], "too_short": [2], "repeated_chars": [2]}


def test_select_longest_keeps_the_longest_answers_in_row_order():
    rows = [{"instruction": "a", "output": "x" * 10}, {"instruction": "b", "output": "x" * 50},
            {"conversations": ["c", "y" * 40, "d", "z" * 500]},  # a conversation: its first answer counts
            {"instruction": "e", "output": "  "}, {"instruction": "f", "output": "x" * 50}]
    kept, dropped = select_longest(rows, top_count=2)
    assert kept == [1, 4] and dropped == {"no_answer": [3], "below_top_count": [2, 0]}
    kept, _ = select_longest(rows, top_fraction=0.6)  # round(0.6 * 5) = 3
    assert kept == [1, 2, 4]
    with pytest.raises(UserError, match="exactly one of --top_count or --top_fraction"):
        select_longest(rows)
