"""Keeps the best rows of a scored dataset (from scripts/score_dataset.py) and says what was dropped and why.

    # AlpaGasus: keep rows the judge rated >= 4.5 (9k of Alpaca's 52k in the paper)
    python scripts/filter_dataset.py --scores data/alpaca.scored.json --method alpagasus --min_score 4.5
    # Superfiltering: drop IFD >= 1 (the instruction does not help), keep the hardest 10% of the dataset
    python scripts/filter_dataset.py --scores data/alpaca.scored.json --method ifd --top_fraction 0.1 --max_score 1
    # rule-based: keep rows without any heuristics flag
    python scripts/filter_dataset.py --scores data/alpaca.scored.json --method heuristics
    # "Long Is More for Alignment" (Zhao et al. 2024): the 1,000 rows with the longest answers (any record file)
    python scripts/filter_dataset.py --scores data/alpaca.json --method longest --top_count 1000

The kept rows keep their order and layout (the score columns stay unless --drop_score_columns), so the output goes
straight to scripts/prepare_json.py / prepare_alpaca.py --data_path. `<output>.manifest.json` records the rule, the
counts, the score statistics and, per reason, the indices of the dropped rows.
"""

import json
import importlib.util
import sys
from pathlib import Path
from typing import Literal, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.records import load_records, write_records
from lit_gpt.quality.scored_records import FLAGS_COLUMN, SCORE_COLUMNS, default_output
from lit_gpt.quality.scoring import answer_length, score_stats, select_longest, select_rows
from lit_gpt.utils import UserError, atomic_write_text, check_output, log, run_cli


def main(
    *,
    scores: Path,
    method: Literal["alpagasus", "ifd", "heuristics", "longest"],
    min_score: Optional[float] = None,
    top_fraction: Optional[float] = None,
    top_count: Optional[int] = None,
    max_score: Optional[float] = None,
    output: Optional[Path] = None,
    drop_score_columns: bool = False,
) -> Path:
    """Write the rows of a scored dataset that pass the rule, plus a manifest.

    Args:
        scores: a file written by scripts/score_dataset.py (for --method longest: any record file)
        method: whose score column to filter on: alpagasus, ifd or heuristics (keeps rows that pass every check);
            longest: no score, the rows with the longest answers (characters; the first answer of a conversation)
        min_score: keep rows with score >= this
        top_fraction: keep the round(top_fraction * rows) highest-scoring rows instead (ties: earlier row first)
        top_count: keep the top_count highest-scoring (or longest) rows instead
        max_score: drop rows above this first (IFD >= 1 means the instruction does not help)
        output: where to write the kept rows (default: <scores stem>.<method>_kept.<suffix>)
        drop_score_columns: remove the score columns from the kept rows
    """
    scores = Path(scores)
    rows = load_records(scores)
    try:
        if method == "longest":
            if min_score is not None or max_score is not None:
                raise UserError("--method longest takes --top_count or --top_fraction, no --min_score/--max_score")
            kept, dropped = select_longest(rows, top_fraction=top_fraction, top_count=top_count)
        else:
            kept, dropped = select_rows(rows, method, min_score=min_score, top_fraction=top_fraction,
                                        max_score=max_score, top_count=top_count)
    except UserError as e:
        raise UserError(f"{scores}: {e}") from None
    output = Path(output) if output is not None else default_output(scores, f"{method}_kept")
    check_output(output, {"--scores": scores}, "--output")
    if not kept:
        raise UserError(f"{scores}: no row passes the rule ({len(rows)} rows; dropped: "
                        + ", ".join(f"{reason} {len(i)}" for reason, i in sorted(dropped.items()))
                        + "); loosen --min_score / --top_fraction / --max_score")
    score_columns = set(SCORE_COLUMNS.values()) | {FLAGS_COLUMN}
    kept_rows = [{k: v for k, v in rows[i].items() if not (drop_score_columns and k in score_columns)} for i in kept]
    write_records(output, kept_rows)

    manifest = {
        "input": str(scores), "output": str(output), "method": method,
        "column": SCORE_COLUMNS.get(method, "answer characters"),
        "rule": {"min_score": min_score, "top_fraction": top_fraction, "top_count": top_count, "max_score": max_score},
        "counts": {"input": len(rows), "kept": len(kept), "dropped": len(rows) - len(kept),
                   "dropped_by_reason": {reason: len(indices) for reason, indices in sorted(dropped.items())}},
        "dropped": {reason: indices for reason, indices in sorted(dropped.items())},
    }
    if method != "heuristics":
        value = answer_length if method == "longest" else (lambda row: row.get(SCORE_COLUMNS[method]))
        kept_scores = [value(rows[i]) for i in kept]
        # the score of the last row kept: the effective threshold of a --top_fraction / --top_count cut
        manifest["threshold"] = min_score if min_score is not None else (min(kept_scores) if kept_scores else None)
        manifest["score_stats"] = {"all": score_stats(value(r) for r in rows), "kept": score_stats(kept_scores)}
    manifest_path = output.with_name(output.name + ".manifest.json")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    counts = manifest["counts"]
    reasons = ", ".join(f"{k}: {v}" for k, v in counts["dropped_by_reason"].items())
    if sum(counts["dropped_by_reason"].values()) > counts["dropped"]:
        reasons += "; a row with several flags counts under each"
    log(f"kept {counts['kept']} of {counts['input']} rows -> {output} (dropped {counts['dropped']}"
        + (f": {reasons}" if reasons else "") + f"); manifest {manifest_path}")
    return output


if __name__ == "__main__":
    run_cli(main)
