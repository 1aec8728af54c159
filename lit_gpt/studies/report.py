"""The dataset comparison's report (`lit_gpt.studies.compare`): the markdown table and notes, and the bar plot with each
variant's paired 95% interval of its difference from the first."""

import json
import math
from pathlib import Path

import matplotlib.figure

from lit_gpt.utils import atomic_path

CONTAMINATION_THRESHOLD = 0.7  # held-out prompts at least this ROUGE-L similar to a training instruction
TIE_BAND = 0.05  # a judge preference within 0.5 +- this is a tie


def _fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _difference(row: dict, key: str, percent: bool) -> str:
    """'+2.1 [-1.0, +5.3] n.s.' (percentage points for accuracies) from the row's paired bootstrap, or ''."""
    d = (row.get("vs_baseline") or {}).get(key)
    if d is None:
        return ""
    scale, digits = (100, 1) if percent else (1, 3)
    mark = "" if d["significant"] else " n.s."
    return (f" ({d['difference'] * scale:+.{digits}f} [{d['low'] * scale:+.{digits}f}, "
            f"{d['high'] * scale:+.{digits}f}]{mark})")


def markdown_table(comparison: dict) -> str:
    judged = comparison.get("judge") is not None
    with_ifeval = any(row.get("ifeval") for row in comparison["variants"])
    with_eos = bool(comparison["prompts"])  # held-out prompts answered for the EOS rate (and the judge)
    # under early stopping a run's weights are its best validation's, which may be an earlier step than its last
    from_best = any(row.get("weights_from_step") not in (None, row["steps"]) for row in comparison["variants"])
    header = ["variant", "data", "order", "epochs", "train ex.", "steps"] + (["weights of step"] if from_best else []) \
        + ["final train loss", "best val loss", "eval loss"] + (["EOS rate"] if with_eos else []) \
        + ["contaminated prompts"]
    if with_ifeval:
        header += ["IFEval prompt strict", "IFEval inst strict", "IFEval prompt loose", "IFEval inst loose",
                   "IFEval answers ended"]
    if judged:
        header.append(f"win rate vs {comparison['judge']['baseline']}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in comparison["variants"]:
        cells = [row["variant"], f"`{row['data_dir']}`", row["order"], row["epochs"], row["train_examples"],
                 row["steps"]] + ([row.get("weights_from_step")] if from_best else []) + [
                 _fmt(row["final_train_loss"]), _fmt(row["best_val_loss"]),
                 _fmt(row["eval_loss"]) + _difference(row, "answer_nll", False)]
        cells += ([_fmt(row["eos_rate"], percent=True)] if with_eos else []) + [row["contaminated_prompts"]]
        if with_ifeval:
            scores = row.get("ifeval") or {}
            cells += [f"{100 * scores['prompt_level_strict_acc']:.1f}" + _difference(row, "ifeval_prompt_strict", True),
                      f"{100 * scores['inst_level_strict_acc']:.1f}",
                      f"{100 * scores['prompt_level_loose_acc']:.1f}" + _difference(row, "ifeval_prompt_loose", True),
                      f"{100 * scores['inst_level_loose_acc']:.1f}",
                      _fmt(scores.get("finished_share"), percent=True)] if scores else ["–"] * 5
        if judged:
            cells.append("baseline" if row is comparison["variants"][0] else
                         f"{_fmt(row.get('win_rate'), percent=True)} ({row.get('wins')}-{row.get('ties')}-"
                         f"{row.get('losses')})")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(comparison: dict) -> str:
    n_prompts = len(comparison["prompts"])
    notes = [
        f"Model: `{comparison['checkpoint_dir']}` ({comparison['method']}), same hyperparameters and seed for every "
        f"variant: `{json.dumps(comparison['hyperparameters'])}` (the rest: the defaults "
        f"finetune/{comparison['method']}.py ships with).",
        f"Held-out set: {comparison['eval_set']}. Eval loss: mean NLL of the reference answers' tokens of "
        f"{comparison['eval_examples']} examples"
        + (f". EOS rate: greedy answers to {n_prompts} prompts that stop within {comparison['max_new_tokens']} new "
           "tokens" if n_prompts else "")
        + ". Best val loss: each variant's own test set (not comparable across data).",
        "Contaminated prompts: held-out prompts whose instruction near-duplicates a training instruction "
        f"(ROUGE-L >= {CONTAMINATION_THRESHOLD}).",
        "In parentheses: the difference from the first variant with its paired 95% bootstrap interval over the same "
        "answers or IFEval prompts (accuracy points); for the eval loss it is the mean over answers of each answer's "
        "mean NLL (every answer counts once, whatever its length), so it is not the difference of the two eval loss "
        "values; n.s. = the interval contains 0: no significant difference.",
    ]
    if comparison.get("ifeval_prompts"):
        notes.append(f"IFEval: {comparison['ifeval_prompts']} prompts, greedy, at most "
                     f"{comparison['ifeval_max_new_tokens']} new tokens, lm-eval's rule checkers; accuracies in %; "
                     "answers ended: the share that stopped with an end-of-turn token within the budget.")
    if comparison.get("judge"):
        judge = comparison["judge"]
        notes.append(f"Win rate: judge `{judge['checkpoint_dir']}` compares each variant's answer with "
                     f"{judge['baseline']}'s on the same {n_prompts} prompts, asked in both orders; wins-ties-losses, "
                     f"a tie (preference within 0.5 ± {judge['tie_band']}) counts half.")
        consistency = [f"{row['variant']}: {_fmt(row.get('order_consistent'), percent=True)}"
                       for row in comparison["variants"][1:]]
        notes.append("Judge consistency (prompts on which it picked the same answer in both orders): "
                     + ", ".join(consistency) + ". A judge that follows the position rather than the content "
                     "produces ties, not evidence.")
    notes += significance_notes(comparison)
    study = comparison.get("study")
    title = "# Dataset comparison\n\n"
    if study:
        title = f"# {study['question']}\n\nRecipe `{study['recipe']}`; data built by:\n\n```\n" + "\n".join(
            study["build"]) + "\n```\n\n"
        machine = study.get("machine") or {}
        notes.append(f"Wall time {comparison['wall_seconds'] / 60:.1f} min (data build {study['build_seconds']:.0f} s; "
                     + ", ".join(f"{r['variant']}: train {r['train_seconds']:.0f} s, eval {r['eval_seconds']:.0f} s"
                                 for r in comparison["variants"])
                     + f") on {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, load average before "
                     f"{', '.join(f'{x:.2f}' for x in machine.get('load_average_before', []))}.")
    return title + markdown_table(comparison) + "\n" + "\n\n".join(notes) + "\n"


SIGNIFICANCE_METRICS = {"answer_nll": ("eval loss", "held-out answers"),
                        "ifeval_prompt_strict": ("IFEval prompt-level strict", "IFEval prompts"),
                        "ifeval_prompt_loose": ("IFEval prompt-level loose", "IFEval prompts")}


def significance_notes(comparison: dict) -> list[str]:
    """One line per variant: which differences are significant, and for the others roughly how many items an
    effect of the observed size would need (`PairedDifference.items_needed`)."""
    notes = []
    for row in comparison["variants"][1:]:
        parts = []
        for key, (label, items) in SIGNIFICANCE_METRICS.items():
            d = (row.get("vs_baseline") or {}).get(key)
            if d is None:
                continue
            if d["significant"]:
                parts.append(f"{label}: significant")
            elif d.get("items_needed") is None:
                parts.append(f"{label}: no difference at all")
            else:
                parts.append(f"{label}: n.s., ~{d['items_needed']} {items} (now {d['items']}) would be needed to "
                             "show a difference of this size")
        if parts:
            notes.append(f"{row['variant']} vs {comparison['variants'][0]['variant']}: " + "; ".join(parts) + ".")
    return notes


def plot_comparison(rows: list[dict], path: Path) -> None:
    panels = [("eval loss", "eval_loss", False)]
    if any(row.get("eos_rate") is not None for row in rows):
        panels.append(("EOS rate", "eos_rate", True))
    if any(row.get("ifeval") for row in rows):
        for row in rows:
            row["ifeval_prompt_strict"] = (row.get("ifeval") or {}).get("prompt_level_strict_acc")
        panels.append(("IFEval prompt-level strict", "ifeval_prompt_strict", True))
    if any(row.get("win_rate") is not None for row in rows):
        panels.append(("win rate vs " + rows[0]["variant"], "win_rate", True))
    curves = any(len(row.get("epoch_curve") or []) > 1 for row in rows)
    fig = matplotlib.figure.Figure(figsize=(4 * (len(panels) + curves), 3.5))  # no pyplot: no GUI backend chosen or needed
    axes = fig.subplots(1, len(panels) + curves, squeeze=False)
    names = [row["variant"] for row in rows]
    for ax, (title, key, percent) in zip(axes[0], panels):
        values = [row.get(key) if row.get(key) is not None else float("nan") for row in rows]
        # the 95% interval of each variant's difference from the first, drawn around its own value
        diff_key = {"eval_loss": "answer_nll", "ifeval_prompt_strict": "ifeval_prompt_strict"}.get(key)
        errors = [[0.0] * len(rows), [0.0] * len(rows)]
        for i, row in enumerate(rows):
            d = (row.get("vs_baseline") or {}).get(diff_key) if diff_key else None
            if d is not None and not math.isnan(values[i]):
                scale = 100 if percent else 1
                errors[0][i] = max(0.0, (d["difference"] - d["low"]) * scale)
                errors[1][i] = max(0.0, (d["high"] - d["difference"]) * scale)
        bars = ax.bar(range(len(rows)), [v * 100 if percent else v for v in values], color="tab:blue",
                      yerr=errors if any(map(any, errors)) else None, capsize=3)
        for bar, value in zip(bars, values):
            if not math.isnan(value):
                ax.annotate(_fmt(value, percent=percent), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=8)
        if percent:
            ax.set_ylim(0, 105)
    if curves:  # the epochs question: how train and val loss move epoch by epoch
        ax = axes[0][-1]
        for i, row in enumerate(rows):
            points = [p for p in row.get("epoch_curve") or [] if p.get("val_loss") is not None]
            color = f"C{i}"
            ax.plot([p["epoch"] for p in points], [p["val_loss"] for p in points], "o-", color=color,
                    label=f"{row['variant']} val")
            ax.plot([p["epoch"] for p in points], [p["train_loss"] for p in points], "x--", color=color, alpha=0.6,
                    label=f"{row['variant']} train")
        ax.set_title("per-epoch loss (own test set)")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
