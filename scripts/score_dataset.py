"""Scores every row of an instruction dataset and writes the scores back as a column (quality beats quantity).

    # AlpaGasus: a judge rates accuracy/helpfulness 0-5 -> score_alpagasus
    python scripts/score_dataset.py --data_path data/alpaca.json --method alpagasus \\
        --judge_checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct
    # Instruction-Following Difficulty with a small LM -> score_ifd
    python scripts/score_dataset.py --data_path data/alpaca.json --method ifd --checkpoint_dir checkpoints/gpt2
    # rule-based flags -> heuristics_flags, heuristics_pass
    python scripts/score_dataset.py --data_path data/alpaca.json --method heuristics
    # answers to prompts with constraints (scripts/add_constraints.py): the share followed -> score_constraints
    python scripts/score_dataset.py --data_path data/answers.json --method constraints

The output (default `<name>.scored.json[l]` beside the input; pass it as --data_path again to add another method's
column) keeps every row and column of the input. Scores are appended batch by batch to a sidecar
`<output>.<method>.scores.jsonl`: an interrupted run (or one stopped by --limit) resumes where it stopped, and rows
that did not change are never scored twice. Then keep the best rows with scripts/filter_dataset.py.
"""

import importlib.util
import sys
import time
from pathlib import Path
from typing import Callable, Literal, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.records import load_records, write_records
from lit_gpt.infer.load import load
from lit_gpt.quality.constraints import ConstraintScorer
from lit_gpt.quality.heuristics import HeuristicConfig, HeuristicScorer
from lit_gpt.quality.ifd import IFDScorer
from lit_gpt.quality.judge import Judge
from lit_gpt.quality.scored_records import (SCORE_COLUMNS, default_output, result_columns, scores_sidecar_path,
                                            scoring_example)
from lit_gpt.quality.scoring import ScoreCache, score_examples, score_stats
from lit_gpt.utils import UserError, check_output, log, run_cli


def main(
    *,
    data_path: Path,
    method: Literal["alpagasus", "ifd", "heuristics", "constraints"],
    judge_checkpoint_dir: Optional[Path] = None,
    checkpoint_dir: Optional[Path] = None,
    output: Optional[Path] = None,
    columns: Optional[dict[str, str]] = None,
    batch_size: int = 8,
    limit: Optional[int] = None,
    first_rows: Optional[int] = None,
    score_from: Literal["logits", "generate"] = "logits",
    max_seq_length: Optional[int] = None,
    device: Optional[str] = None,
    precision: Optional[str] = None,
    restart: bool = False,
    min_response_chars: int = 1,
    max_response_words: int = 4000,
) -> Path:
    """Score a JSON/JSONL instruction dataset with one method and write it back with the score column.

    Args:
        data_path: JSON or JSONL dataset (Alpaca, Dolly, ShareGPT/messages, LIMA conversations, ...)
        method: alpagasus (LLM judge, 0-5), ifd (instruction-following difficulty), heuristics (rule flags),
            constraints (the share of a row's constraints, from scripts/add_constraints.py, that its output follows)
        judge_checkpoint_dir: the judge for alpagasus (an instruct model is best; any checkpoint works)
        checkpoint_dir: the language model for ifd (GPT-2-sized is enough); also accepted as the judge
        output: where to write the scored rows (default: <data_path stem>.scored.<suffix> beside it; a file this
            script already scored gets the new column in place)
        columns: our field -> the file's column, e.g. '{"input": "context", "output": "response"}' for Dolly
        batch_size: examples per forward pass
        limit: score at most this many not-yet-scored rows in this run (the rest stay null until a rerun)
        first_rows: score and write only the first this many rows of the file: a fixed sample (a rerun resumes it,
            never grows it, unlike --limit)
        score_from: alpagasus: 'logits' = expected score from the digit probabilities (one forward pass);
            'generate' = parse the number in the judge's greedy answer
        max_seq_length: cap on tokens per example (default: the model's context); longer prompts lose their middle
        device: cpu, cuda, cuda:1, ...; default cuda when available
        precision: 32-true, bf16-true or 16-true; default bf16 where the hardware has it natively, else 32-true
        restart: discard the scores saved by an earlier run with other settings
        min_response_chars: heuristics: shorter responses (and those without any letter or digit) are flagged
            too_short
        max_response_words: heuristics: longer responses are flagged too_long
    """
    _check_counts(batch_size, limit, first_rows)
    data_path = Path(data_path)
    rows, examples = _read_rows(data_path, columns, first_rows)
    output = _output_path(data_path, output, rows, checkpoint_dir, judge_checkpoint_dir)
    scorer, settings = _make_scorer(method, judge_checkpoint_dir, checkpoint_dir, device, precision, max_seq_length,
                                    score_from, min_response_chars, max_response_words)
    cache = ScoreCache(scores_sidecar_path(output, method), method, settings, restart=restart)
    already = sum(cache.get(e) is not None for e in examples)
    log(f"{data_path}: {len(rows)} rows, {already} already scored in {cache.path}")
    results = score_examples(examples, scorer, cache, batch_size=batch_size, limit=limit,
                             sort_by_length=method in ("alpagasus", "ifd"), progress=_progress_logger())
    _write_scored_rows(output, rows, results, method)
    return output


def _check_counts(batch_size: int, limit: Optional[int], first_rows: Optional[int]) -> None:
    if batch_size < 1:
        raise UserError(f"--batch_size {batch_size}: must be at least 1")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be at least 1 (leave it out to score every row)")
    if first_rows is not None and first_rows < 1:
        raise UserError(f"--first_rows {first_rows}: must be at least 1 (leave it out to score the whole file)")


def _read_rows(data_path: Path, columns: Optional[dict[str, str]], first_rows: Optional[int]) -> tuple[list, list]:
    """The file's rows (written back as they are) and the scoring rows made of them (read through --columns)."""
    rows = load_records(data_path)[:first_rows]
    if not rows:
        raise UserError(f"{data_path}: no rows to score")
    examples = [scoring_example(i, row) for i, row in
                enumerate(load_records(data_path, columns=columns)[:first_rows] if columns else rows)]
    return rows, examples


def _output_path(data_path: Path, output: Optional[Path], rows: list, checkpoint_dir: Optional[Path],
                 judge_checkpoint_dir: Optional[Path]) -> Path:
    """--output, else: a file this script wrote gets the new column in place (scores of several methods side by
    side); the user's own data is never written over."""
    already_scored = any(column in rows[0] for column in SCORE_COLUMNS.values())
    output = Path(output) if output is not None else data_path if already_scored else default_output(data_path, "scored")
    in_place = already_scored and output.resolve() == data_path.resolve()
    check_output(output, {"--data_path": None if in_place else data_path, "--checkpoint_dir": checkpoint_dir,
                          "--judge_checkpoint_dir": judge_checkpoint_dir}, "--output")
    return output


def _make_scorer(method: str, judge_checkpoint_dir: Optional[Path], checkpoint_dir: Optional[Path],
                 device: Optional[str], precision: Optional[str], max_seq_length: Optional[int], score_from: str,
                 min_response_chars: int, max_response_words: int) -> tuple[object, dict]:
    """The method's scorer (the model loaded for alpagasus and ifd) and the settings its scores depend on."""
    if method in ("heuristics", "constraints"):  # rules, no model
        scorer = ConstraintScorer() if method == "constraints" else HeuristicScorer(HeuristicConfig(
            min_response_chars=min_response_chars, max_response_words=max_response_words))
        return scorer, {"method": method, **scorer.settings}
    model_dir = (judge_checkpoint_dir or checkpoint_dir) if method == "alpagasus" else (checkpoint_dir or judge_checkpoint_dir)
    if model_dir is None:
        flag = "--judge_checkpoint_dir" if method == "alpagasus" else "--checkpoint_dir"
        raise UserError(f"--method {method} needs a model: pass {flag} checkpoints/ORG/NAME")
    loaded = load(model_dir, device=device, precision=precision)
    if method == "alpagasus":
        scorer = Judge(loaded.model, loaded.tokenizer, loaded.style, max_seq_length=max_seq_length,
                       score_from=score_from)
    else:
        scorer = IFDScorer(loaded.model, loaded.tokenizer, loaded.style, max_seq_length=max_seq_length)
    return scorer, {"method": method, "checkpoint": str(Path(model_dir).resolve()), **scorer.settings}


def _progress_logger() -> Callable[[int, int], None]:
    """A progress callback that logs a line every 10 s (and at the end) with the rate since it was made."""
    started = last_log = time.perf_counter()

    def progress(done: int, total: int) -> None:
        nonlocal last_log
        now = time.perf_counter()
        if now - last_log >= 10 or done == total:  # a line every 10 s
            last_log = now
            log(f"scored {done}/{total} ({done / max(now - started, 1e-9):.1f} rows/s)")

    return progress


def _write_scored_rows(output: Path, rows: list, results: dict, method: str) -> None:
    """Every input row with the method's columns (null where not scored yet), and a line saying how far it got."""
    empty = result_columns(method, {"score": None, "flags": None})
    scored_rows = [{**row, **(result_columns(method, results[i]) if i in results else empty)}
                   for i, row in enumerate(rows)]
    write_records(output, scored_rows)
    # the line says what the file holds: a row the judge answered without a score is written null, not scored
    column = SCORE_COLUMNS[method]
    written = [row[column] for row in scored_rows]
    with_score = sum(value is not None for value in written)
    without, missing = len(results) - with_score, len(rows) - len(results)
    log(f"wrote {output}: {with_score} of {len(rows)} rows scored ({column}: {score_stats(written)})"
        + (f"; {without} judged without a score (null; filter_dataset.py drops them as unscored)" if without else "")
        + (f"; {missing} left, run again to finish" if missing else ""))


if __name__ == "__main__":
    run_cli(main)
