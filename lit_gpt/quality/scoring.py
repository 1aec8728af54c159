"""Scoring a dataset resumably, and choosing rows by score.

Every finished batch is appended to a sidecar JSONL keyed by row index and content hash, so a rerun after an
interruption scores only the rows not yet done.
"""

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from lit_gpt.data.records import iter_jsonl
from lit_gpt.quality.scored_records import FLAGS_COLUMN, METHODS, SCORE_COLUMNS, ScoringExample, scoring_example
from lit_gpt.utils import UserError, write_error

# ======================================================================================================================
# Resumable scoring over a dataset
# ======================================================================================================================
class ScoreCache:
    """Sidecar JSONL beside the output: a header line with the settings, then one line per scored row
    ({"index", "hash", "result"}). Appended and flushed after every batch, so an interrupted run loses at most one
    batch; a half-written last line is cut off on opening."""

    def __init__(self, path: Path, method: str, settings: dict, restart: bool = False) -> None:
        self.path = Path(path)
        self.header = {"sidecar": "lit_gpt.quality", "method": method, "settings": settings}
        self.done: dict[int, dict] = {}
        if restart and self.path.exists():
            self.path.unlink()
        if self.path.exists() and self._cut_torn_line():
            self._read()
        else:
            self._append(json.dumps(self.header, ensure_ascii=False) + "\n", mode="w")

    def _cut_torn_line(self) -> int:
        """Cuts off the line being written when a run was killed (the last one, without its newline), so that the
        next batch starts a line of its own. Returns the size left."""
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)
        return data.rfind(b"\n") + 1

    def _read(self) -> None:
        entries = iter_jsonl(self.path)
        if next(entries, (None, None))[1] != self.header:
            raise UserError(f"{self.path}: holds scores from other settings or another method (judge, prompt, "
                            "tokenizer or thresholds changed); pass --restart true to score again, or delete the file")
        for where, entry in entries:
            if not isinstance(entry.get("index"), int) or not {"hash", "result"} <= entry.keys():
                raise UserError(f"{where}: not a score entry {{index, hash, result}}; pass --restart true to score "
                                "again, or delete the file")
            self.done[entry["index"]] = entry

    def get(self, example: ScoringExample) -> Optional[dict]:
        entry = self.done.get(example.index)
        return entry["result"] if entry is not None and entry.get("hash") == example.content_hash else None

    def add(self, batch: Sequence[ScoringExample], results: Sequence[dict]) -> None:
        entries = [{"index": e.index, "hash": e.content_hash, "result": r} for e, r in zip(batch, results)]
        self._append("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries))
        self.done.update((entry["index"], entry) for entry in entries)

    def _append(self, text: str, mode: str = "a") -> None:
        """Appends (or, for the header, writes) and flushes; a full or read-only disk is one line. The scores of
        earlier batches are already in the file, so a rerun after freeing space goes on from there."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, mode, encoding="utf-8") as f:
                f.write(text)
                f.flush()
        except OSError as e:
            raise (write_error(self.path, e, "--output") or e) from None


def score_examples(examples: Sequence[ScoringExample], scorer, cache: ScoreCache, batch_size: int = 8,
                   limit: Optional[int] = None, sort_by_length: bool = True,
                   progress: Optional[Callable[[int, int], None]] = None) -> dict[int, dict]:
    """Scores the examples not yet in the cache (at most `limit` of them, in row order) and returns
    {index: result} for every example scored so far. Batches group similar lengths to waste little padding."""
    pending = [e for e in examples if cache.get(e) is None]
    if limit is not None:
        pending = pending[:max(limit, 0)]
    if sort_by_length:
        pending.sort(key=lambda e: len(e.instruction) + len(e.input) + len(e.output))
    for start in range(0, len(pending), batch_size):
        batch = pending[start:start + batch_size]
        cache.add(batch, scorer.score(batch))
        if progress is not None:
            progress(min(start + batch_size, len(pending)), len(pending))
    return {e.index: r for e in examples if (r := cache.get(e)) is not None}


# ======================================================================================================================
# Filtering by score
# ======================================================================================================================
def select_rows(rows: Sequence[dict], method: str, min_score: Optional[float] = None,
                top_fraction: Optional[float] = None, max_score: Optional[float] = None,
                top_count: Optional[int] = None) -> tuple[list[int], dict]:
    """(indices of kept rows in their original order, {reason: [dropped indices]}).

    heuristics: keep rows whose heuristics_pass is 1 (reasons = their flags). alpagasus/ifd: drop unscored rows,
    rows above max_score, then keep those >= min_score, or the top_count (or round(top_fraction * len(rows)))
    highest-scoring ones (ties broken by row order)."""
    if method not in METHODS:
        raise UserError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    column = SCORE_COLUMNS[method]
    dropped: dict[str, list[int]] = {}

    def drop(reason: str, i: int) -> None:
        dropped.setdefault(reason, []).append(i)

    rules = (min_score, top_fraction, top_count)
    if method == "heuristics" and (any(r is not None for r in rules) or max_score is not None):
        raise UserError("--method heuristics keeps the rows that pass every check; it takes no --min_score, "
                        "--top_fraction, --top_count or --max_score")
    if method != "heuristics" and sum(r is not None for r in rules) != 1:
        raise UserError("give exactly one of --min_score, --top_fraction or --top_count")
    _check_top(top_fraction, top_count)
    if not any(column in row for row in rows):
        raise UserError(f"no row has a {column!r} column; score the file first with "
                        f"`python scripts/score_dataset.py --method {method}`")
    if method == "heuristics":
        kept = []
        for i, row in enumerate(rows):
            if row.get(column) is None:
                drop("unscored", i)
            elif row[column]:
                kept.append(i)
            else:
                for flag in row.get(FLAGS_COLUMN) or ["failed"]:
                    drop(flag, i)
        return kept, dropped
    eligible = []
    for i, row in enumerate(rows):
        score = row.get(column)
        if score is None or (isinstance(score, float) and math.isnan(score)):
            drop("unscored", i)
        elif max_score is not None and score > max_score:
            drop("above_max_score", i)
        elif min_score is not None and score < min_score:
            drop("below_min_score", i)
        else:
            eligible.append(i)
    if top_fraction is not None or top_count is not None:
        return _top(eligible, lambda i: rows[i][column], len(rows), top_fraction, top_count, dropped)
    return eligible, dropped


def _check_top(top_fraction: Optional[float], top_count: Optional[int]) -> None:
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise UserError(f"--top_fraction {top_fraction}: must be in (0, 1]")
    if top_count is not None and top_count < 1:
        raise UserError(f"--top_count {top_count}: must be >= 1")


def _top(eligible: list[int], value: Callable[[int], float], rows: int, top_fraction: Optional[float],
         top_count: Optional[int], dropped: dict) -> tuple[list[int], dict]:
    """The top_count (or round(top_fraction * rows)) eligible rows of highest value, in row order (ties: the earlier
    row); the others dropped as below_top_fraction / below_top_count."""
    n_keep = top_count if top_count is not None else int(round(top_fraction * rows))
    ranked = sorted(eligible, key=lambda i: (-value(i), i))
    reason = "below_top_count" if top_count is not None else "below_top_fraction"
    for i in ranked[n_keep:]:
        dropped.setdefault(reason, []).append(i)
    return sorted(ranked[:n_keep]), dropped


def answer_length(row: dict) -> int:
    """The length (characters) of a row's answer, the first one of a conversation."""
    return len(scoring_example(0, row).output.strip())


def select_longest(rows: Sequence[dict], top_fraction: Optional[float] = None,
                   top_count: Optional[int] = None) -> tuple[list[int], dict]:
    """The rows with the longest answers ("Long Is More for Alignment", Zhao et al. 2024: the 1,000 longest answers
    of a dataset are a strong baseline for data selection): (kept indices in row order, {reason: [dropped]}). The
    paper counts tokens; characters rank the same rows nearly alike and need no tokenizer."""
    if (top_fraction is None) == (top_count is None):
        raise UserError("--method longest: give exactly one of --top_count or --top_fraction")
    _check_top(top_fraction, top_count)
    dropped: dict[str, list[int]] = {}
    lengths = [answer_length(row) for row in rows]
    eligible = []
    for i, n in enumerate(lengths):
        if n:
            eligible.append(i)
        else:
            dropped.setdefault("no_answer", []).append(i)
    return _top(eligible, lengths.__getitem__, len(rows), top_fraction, top_count, dropped)


def score_stats(values: Iterable[float]) -> Optional[dict]:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"count": len(values), "min": values[0], "median": values[len(values) // 2], "max": values[-1],
            "mean": round(sum(values) / len(values), 6)}
