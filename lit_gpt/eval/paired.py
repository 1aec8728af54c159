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
"""

import json
from pathlib import Path

from lit_gpt.eval.statistics import ALPHA, compare_arms, holm, mcnemar_exact
from lit_gpt.utils import UserError, atomic_write_json, atomic_write_text

IFEVAL_FILE, REFERENCE_FILE = "ifeval_responses.jsonl", "reference_loss.jsonl"
SEED_NOTE = ("one run per model: the tests see item noise only; another training seed can move a fine-tune's "
             "scores by more (see the studies' A/A arms)")


def _rows(path: Path) -> list:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not an evaluate.py per-item file ({e})") from None


def _paired(ours_dir: Path, baseline_dir: Path, name: str, key) -> "tuple[list, list] | None":
    """The two folders' rows of one per-item file, in the same item order; None where either lacks the file."""
    ours_path, base_path = ours_dir / name, baseline_dir / name
    if not (ours_path.is_file() and base_path.is_file()):
        return None
    ours, base = _rows(ours_path), _rows(base_path)
    by_key = {key(row): row for row in base}
    missing = [key(row) for row in ours if key(row) not in by_key]
    if missing or len(by_key) != len(ours):
        raise UserError(f"{base_path} and {ours_path} hold different items ({len(base)} and {len(ours)} rows, "
                        f"e.g. {str(missing[:1])[:80]} only in the second); evaluate both on the same prompts "
                        "(--ifeval_path, --limit, --reference_data)")
    return ours, [by_key[key(row)] for row in ours]


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
    # each answer's mean NLL per token (reference_loss.jsonl holds the sum over its tokens and their count)
    a, b = ([row["nll"] / row["tokens"] for row in rows] for rows in (base, ours))
    d = compare_arms(a, b)
    return {"reference_nll": {"baseline": sum(a) / len(a), "this": sum(b) / len(b), "difference": d.difference,
                              "low": d.low, "high": d.high, "p_value": d.p_value, "mde": d.mde, "items": d.items,
                              "test": "paired t over answers (mean per-answer NLL, nats/token)"}}


def check_baseline(baseline_dir: Path) -> None:
    if not (Path(baseline_dir) / "results.json").is_file():
        raise UserError(f"--baseline {baseline_dir}: not an evaluate.py output folder (no results.json); evaluate "
                        "the baseline model first, with the same --ifeval_path/--limit/--reference_data")


def compare_evaluations(ours_dir: Path, baseline_dir: Path) -> dict:
    """This evaluation (ours_dir) minus the baseline's, per metric both folders have, Holm-adjusted."""
    check_baseline(baseline_dir)
    metrics = {}
    ifeval_rows = _paired(Path(ours_dir), Path(baseline_dir), IFEVAL_FILE, key=lambda row: row["prompt"])
    if ifeval_rows:
        metrics.update(_ifeval(*ifeval_rows))
    reference_rows = _paired(Path(ours_dir), Path(baseline_dir), REFERENCE_FILE,
                             key=lambda row: (row["id"], row["instruction"]))
    if reference_rows:
        metrics.update(_reference_loss(*reference_rows))
    if not metrics:
        raise UserError(f"--baseline {baseline_dir}: no task in common with this evaluation (IFEval answers or "
                        "reference losses in both)")
    for metric, p_adjusted in zip(metrics.values(), holm([m["p_value"] for m in metrics.values()])):
        metric["p_holm"] = p_adjusted
        metric["significant"] = p_adjusted < ALPHA
    return {"baseline": str(baseline_dir), "alpha": ALPHA, "note": SEED_NOTE, "metrics": metrics}


def comparison_markdown(comparison: dict) -> str:
    lines = [f"## Compared with {comparison['baseline']}", "", "| metric | baseline | this | difference | test | "
             "p (Holm) | verdict |", "|---|---|---|---|---|---|---|"]
    for name, m in comparison["metrics"].items():
        scale, unit = (100, " pp") if name.startswith("ifeval") else (1, "")
        detail = (f"{m['discordant']['this_only']} vs {m['discordant']['baseline_only']} discordant"
                  if "discordant" in m else f"[{m['low']:+.4f}, {m['high']:+.4f}], MDE {m['mde']:.4f}")
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
