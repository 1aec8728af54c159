"""One evaluation against another on the same items: `scripts/evaluate.py --baseline DIR`.

Two models answered the same IFEval prompts and scored the same reference answers (two `evaluate.py` output
folders). Each metric's difference (this run minus the baseline) is tested item by item:
- IFEval prompt-level accuracy, strict and loose: the exact McNemar test (only prompts that one model passes and
  the other fails count; `statistics.mcnemar_exact`), the right test for one run per model on pass/fail items;
- reference loss: the differences of each answer's mean NLL per token, with the interval and test of
  `statistics.compare_arms` (one run per model: it sees item noise only).
The p-values are Holm-adjusted over the metrics compared. One run per model cannot see training-seed noise: a
difference between two fine-tunes can be a seed's doing (the studies' A/A arms measure that), so the comparison says
so rather than calling a fine-tuning method better.

Several runs of each (training seeds: `scripts/compare_evaluations.py`): each metric's scores form a (runs, items)
matrix per side, and `statistics.compare_arms` tests the difference with both the seed noise (how far the runs'
means scatter) and the item noise, the studies' test. Its p-value is then made valid for every split of the variance
between seeds and items (`statistics.worst_case_p`): with a single baseline run (a base model's greedy evaluation)
and 3 seeds the test alone calls up to ~8% of no-differences significant, corrected to at most ~5% (simulated in
tests/eval/test_statistics.py). Holm-adjusted over the metrics.
"""

import json
from pathlib import Path

from lit_gpt.eval.statistics import ALPHA, compare_arms, holm, mcnemar_exact
from lit_gpt.utils import UserError, atomic_write_json, atomic_write_text

IFEVAL_FILE, REFERENCE_FILE = "ifeval_responses.jsonl", "reference_loss.jsonl"
# metric -> (per-item file, an item's key, its score); IFEval: a prompt passes when all its instructions do;
# reference loss: each answer's mean NLL per token (the file holds the sum over its tokens and their count)
ITEM_SCORES = {
    "ifeval_prompt_strict": (IFEVAL_FILE, lambda row: row["prompt"], lambda row: float(all(row["strict"]))),
    "ifeval_prompt_loose": (IFEVAL_FILE, lambda row: row["prompt"], lambda row: float(all(row["loose"]))),
    "reference_nll": (REFERENCE_FILE, lambda row: (row["id"], row["instruction"]),
                      lambda row: row["nll"] / row["tokens"]),
}
RUNS_NOTE = ("the tests see seed noise (the spread of the runs' means; none on a side of one run, e.g. a base model's "
             "greedy evaluation) and item noise")
SEED_NOTE = ("one run per model: the tests see item noise only; another training seed can move a fine-tune's "
             "scores by more (see the studies' A/A arms)")


def _rows(path: Path) -> list:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not an evaluate.py per-item file ({e})") from None


def _aligned(dirs: list, name: str, key) -> "list[list] | None":
    """Each folder's rows of one per-item file (read once), all in the first folder's item order; None where any
    folder lacks the file."""
    paths = [Path(d) / name for d in dirs]
    if not all(path.is_file() for path in paths):
        return None
    first = _rows(paths[0])
    aligned = [first]
    for path in paths[1:]:
        rows = _rows(path)
        by_key = {key(row): row for row in rows}
        missing = [key(row) for row in first if key(row) not in by_key]
        if missing or len(by_key) != len(first):
            raise UserError(f"{path} and {paths[0]} hold different items ({len(rows)} and {len(first)} rows, "
                            f"e.g. {str(missing[:1])[:80]} only in the second); evaluate both on the same prompts "
                            "(--ifeval_path, --limit, --reference_data)")
        aligned.append([by_key[key(row)] for row in first])
    return aligned


def _ifeval(ours: list, base: list) -> dict:
    out = {}
    for kind in ("strict", "loose"):
        a, b = [all(row[kind]) for row in base], [all(row[kind]) for row in ours]
        test = mcnemar_exact(a, b)
        out[f"ifeval_prompt_{kind}"] = {
            "baseline": sum(a) / len(a), "this": sum(b) / len(b), "difference": test["difference"],
            "p_value": test["p_value"], "test": "exact McNemar", "items": len(a),
            "discordant": {"this_only": test["b_only"], "baseline_only": test["a_only"]}}
    return out


def _reference_loss(ours: list, base: list) -> dict:
    score = ITEM_SCORES["reference_nll"][2]
    a, b = ([score(row) for row in rows] for rows in (base, ours))
    d = compare_arms(a, b)
    return {"reference_nll": {"baseline": sum(a) / len(a), "this": sum(b) / len(b), "difference": d.difference,
                              "low": d.low, "high": d.high, "p_value": d.p_value, "mde": d.mde, "items": d.items,
                              "test": "paired t over answers (mean per-answer NLL, nats/token)"}}


def check_baseline(baseline_dir: Path, flag: str = "--baseline") -> None:
    if not (Path(baseline_dir) / "results.json").is_file():
        raise UserError(f"{flag} {baseline_dir}: not an evaluate.py output folder (no results.json); evaluate "
                        "the model first, with the same --ifeval_path/--limit/--reference_data")


def compare_evaluations(ours_dir: Path, baseline_dir: Path) -> dict:
    """This evaluation (ours_dir) minus the baseline's, per metric both folders have, Holm-adjusted."""
    check_baseline(baseline_dir)
    metrics = {}
    ifeval_rows = _aligned([ours_dir, baseline_dir], IFEVAL_FILE, ITEM_SCORES["ifeval_prompt_strict"][1])
    if ifeval_rows:
        metrics.update(_ifeval(*ifeval_rows))
    reference_rows = _aligned([ours_dir, baseline_dir], REFERENCE_FILE, ITEM_SCORES["reference_nll"][1])
    if reference_rows:
        metrics.update(_reference_loss(*reference_rows))
    if not metrics:
        raise UserError(f"--baseline {baseline_dir}: no task in common with this evaluation (IFEval answers or "
                        "reference losses in both)")
    _adjust(metrics)
    return {"baseline": str(baseline_dir), "alpha": ALPHA, "note": SEED_NOTE, "metrics": metrics}


def _adjust(metrics: dict) -> None:
    for metric, p_adjusted in zip(metrics.values(), holm([m["p_value"] for m in metrics.values()])):
        metric["p_holm"] = p_adjusted
        metric["significant"] = p_adjusted < ALPHA


def compare_runs(run_dirs: list, baseline_dirs: list, left_out_prompts: frozenset = frozenset()) -> dict:
    """Several evaluations of one model (e.g. one per training seed) against several (or one) of a baseline, every
    folder on the same items: per metric all folders have, the difference of the means with seed and item noise
    (`statistics.compare_arms`), Holm-adjusted. left_out_prompts: IFEval prompts not counted (e.g. a sample an
    earlier look was taken on, for a confirmation on the others)."""
    for flag, folders in (("--baseline", baseline_dirs), ("--runs", run_dirs)):
        for folder in folders:
            check_baseline(folder, flag)
    dirs = [Path(d) for d in [*baseline_dirs, *run_dirs]]
    metrics, read = {}, {}
    for name, (file_name, key, score) in ITEM_SCORES.items():
        if file_name not in read:  # strict and loose IFEval share one file
            read[file_name] = _aligned(dirs, file_name, key)
        rows = read[file_name]
        if rows is None:
            continue
        if file_name == IFEVAL_FILE and left_out_prompts:
            rows = _leave_out(rows, left_out_prompts)
        scores = [[score(row) for row in folder] for folder in rows]
        a, b = scores[:len(baseline_dirs)], scores[len(baseline_dirs):]
        metrics[name] = _runs_difference(a, b)
    if not metrics:
        raise UserError("the folders share no task (IFEval answers or reference losses in every one)")
    _adjust(metrics)
    note = RUNS_NOTE + (f"; {len(left_out_prompts)} IFEval prompts left out (--without_ifeval_sample)"
                        if left_out_prompts else "")
    return {"baseline": [str(d) for d in baseline_dirs], "runs": [str(d) for d in run_dirs], "alpha": ALPHA,
            "note": note, "metrics": metrics}


def _leave_out(rows: list, prompts: frozenset) -> list:
    """Every folder's IFEval rows (aligned) without those of `prompts`, which must all be there."""
    keep = [i for i, row in enumerate(rows[0]) if row["prompt"] not in prompts]
    if len(rows[0]) - len(keep) != len(prompts):
        raise UserError(f"--without_ifeval_sample: {len(prompts) - (len(rows[0]) - len(keep))} of its "
                        f"{len(prompts)} prompts are not in these evaluations; give the N of the sample they "
                        "were evaluated on, with all the prompts evaluated now")
    if len(keep) < 2:
        raise UserError("--without_ifeval_sample leaves fewer than 2 IFEval prompts to compare")
    return [[folder[i] for i in keep] for folder in rows]


def _runs_difference(a: list, b: list) -> dict:
    """compare_arms' difference of two (runs, items) score lists: its p-value valid for any split of seed and item
    noise, the interval and detectable effect read at the level that matches it (`statistics.worst_case_p`)."""
    d = compare_arms(a, b)
    means = [[sum(run) / len(run) for run in side] for side in (a, b)]  # each run's mean
    return {"baseline": sum(means[0]) / len(a), "this": sum(means[1]) / len(b), "difference": d.difference,
            "low": d.low, "high": d.high, "level": d.level, "p_value": d.p_value, "p_satterthwaite": d.p_t_test,
            "mde": d.mde, "items": d.items, "run_means": means,
            "test": "t over runs and items (seed and item noise), valid for any split of the two"}


def comparison_markdown(comparison: dict) -> str:
    runs = comparison.get("runs")  # several runs a side (compare_runs), or one
    title = (f"{len(runs)} runs ({', '.join(runs)}) compared with {', '.join(comparison['baseline'])}" if runs
             else f"Compared with {comparison['baseline']}")
    lines = [f"## {title}", "", "| metric | baseline | this | difference | test | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, m in comparison["metrics"].items():
        scale, unit = (100, " pp") if name.startswith("ifeval") else (1, "")
        detail = (f"{m['discordant']['this_only']} vs {m['discordant']['baseline_only']} discordant"
                  if "discordant" in m else f"[{scale * m['low']:+.4g}, {scale * m['high']:+.4g}], MDE "
                  f"{scale * m['mde']:.4g}")
        if "run_means" in m:
            sides = (", ".join(f"{scale * v:.4g}" for v in side) for side in m["run_means"])
            detail += "; run means " + " / ".join(sides)
        verdict = "significant" if m["significant"] else "no detectable difference"
        lines.append(f"| {name} | {scale * m['baseline']:.4g} | {scale * m['this']:.4g} | "
                     f"{scale * m['difference']:+.4g}{unit} | {m['test']}: {detail} | {m['p_holm']:.3g} | {verdict} |")
    return "\n".join(lines + ["", comparison["note"]]) + "\n"


def write_comparison(out_dir: Path, baseline_dir: Path) -> str:
    """compare_evaluations written into out_dir (comparison.json, comparison.md); returns the markdown."""
    comparison = compare_evaluations(out_dir, baseline_dir)
    markdown = comparison_markdown(comparison)
    atomic_write_json(Path(out_dir) / "comparison.json", comparison)
    atomic_write_text(Path(out_dir) / "comparison.md", markdown)
    return markdown
