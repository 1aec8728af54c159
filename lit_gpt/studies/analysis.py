"""The statistics of a study (`lit_gpt.eval.statistics` applied to its runs): what the report may claim.

Every arm is trained once per seed and every run answers the same items, so an arm's scores on a metric form a
(seeds, items) matrix. The study declares ONE primary metric (--primary_metric) before it runs; on it, every arm is
compared with the baseline (the first variant) by `compare_arms` (seed and item noise), the p-values are corrected
by Holm within the study, and each comparison has its interval and the minimum detectable effect of its design. With
one seed per arm only item noise can be seen: pass/fail metrics then use the exact McNemar test and the report says
"one seed: item noise only". The A/A control (the baseline trained again with other seeds) is compared with the
baseline the same way: a method that calls it significant is not to be trusted. Other metrics are shown with their
between-seed spread, not tested: the report makes no claim about them.

The length-controlled view (pass/fail IFEval metrics): answers of different arms differ in length, and length alone
passes or fails some checks. The score is adjusted for answer length (words) with the slope of an item-demeaned
regression of the score on length and arm (an ANCOVA with item effects), and the adjusted scores are compared as
above; the slope's own uncertainty is left out, so that interval is a little too narrow.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from lit_gpt.eval.echo import without_echoes
from lit_gpt.eval.statistics import ArmDifference, adjust_study, compare_arms, mcnemar_exact
from lit_gpt.utils import UserError

HELD_OUT = "held_out"  # the name of --eval_path's answers among the answer styles (metric `answer_nll`)
IFEVAL_METRICS = {"ifeval_prompt_strict": "IFEval prompt-level strict accuracy",
                  "ifeval_prompt_loose": "IFEval prompt-level loose accuracy",
                  "ifeval_prompt_strict_no_echo": "IFEval prompt-level strict accuracy, echoes counted as failures",
                  "ifeval_prompt_loose_no_echo": "IFEval prompt-level loose accuracy, echoes counted as failures"}
LOSS_METRICS = {"answer_nll": "answer NLL (nats/token, mean per answer: every answer once)",
                "answer_nll_no_eos": "answer NLL without the end-of-turn token (nats/token, mean per answer)"}
ARM_ROLES = ("baseline", "arm", "aa_control")  # trained arms; "base" and "reference" rows are evaluated only


@dataclass(frozen=True)
class Metric:
    name: str  # e.g. ifeval_prompt_loose, answer_nll, answer_nll:gpt4
    label: str
    pass_fail: bool  # 0/1 per item (shown as % accuracy, higher is better), else a loss (lower is better)
    reference_set: Optional[str] = None  # a loss: the answer style it is measured on


def metric(name: str) -> Metric:
    """The metric a name means: an IFEval one, or answer_nll[_no_eos][:<reference set>]."""
    if name in IFEVAL_METRICS:
        return Metric(name, IFEVAL_METRICS[name], True)
    base, _, reference_set = name.partition(":")
    if base in LOSS_METRICS:
        reference_set = reference_set or HELD_OUT
        return Metric(name, f"{LOSS_METRICS[base]} on {reference_set}", False, reference_set)
    raise UserError(f"--primary_metric {name!r}: use one of {', '.join(IFEVAL_METRICS)}, answer_nll or "
                    "answer_nll_no_eos (the held-out set's answers), or answer_nll:<name> for a --reference_sets set")


def check_primary_metric(name: str, ifeval_prompts: int, eval_examples: int, reference_sets: Sequence[str]) -> Metric:
    """The primary metric, refused when the study does not measure it."""
    chosen = metric(name)
    if chosen.pass_fail and ifeval_prompts == 0:
        raise UserError(f"--primary_metric {name}: IFEval is off; pass --ifeval_prompts -1 (all 541) or N")
    if not chosen.pass_fail and eval_examples == 0:
        raise UserError(f"--primary_metric {name}: no answers are scored; pass --eval_examples N")
    if chosen.reference_set not in (None, HELD_OUT, *reference_sets):
        raise UserError(f"--primary_metric {name}: {chosen.reference_set!r} is not one of --reference_sets "
                        f"({', '.join(reference_sets) or 'none given'})")
    return chosen


def item_scores(evaluation: dict, name: str) -> Optional[list[float]]:
    """One run's per-item scores on a metric (None when the run was not measured on it)."""
    chosen = metric(name)
    if chosen.pass_fail:
        scores = evaluation.get("ifeval")
        if not scores:
            return None
        level = "prompt_loose" if "loose" in name else "prompt_strict"
        passed = without_echoes(scores[level], scores["echo"]) if name.endswith("_no_echo") else scores[level]
        return [float(v) for v in passed]
    losses = (evaluation.get("losses") or {}).get(chosen.reference_set)
    return losses[name.partition(":")[0]] if losses else None


def arm_matrix(arm: dict, name: str) -> Optional[np.ndarray]:
    """An arm's (seeds, items) scores on a metric, None when a run lacks it."""
    rows = [item_scores(run["evaluation"], name) for run in arm["runs"]]
    return None if not rows or any(r is None for r in rows) else np.asarray(rows, dtype=np.float64)


def spread(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """(mean, between-seed standard deviation) of one number of each run; the SD is None for a single run."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def metric_spread(arm: dict, name: str) -> tuple[Optional[float], Optional[float]]:
    matrix = arm_matrix(arm, name)
    return (None, None) if matrix is None else spread(matrix.mean(axis=1))


def difference(a: np.ndarray, b: np.ndarray, pass_fail: bool) -> tuple[ArmDifference, str]:
    """(B - A, the test that gave its p-value)."""
    result = compare_arms(a, b)
    if a.shape[0] > 1 and b.shape[0] > 1:
        return result, (f"t test over seeds and items (Satterthwaite df {result.df:.1f}), p valid for any split of "
                        f"seed and item noise (t test's own p {result.p_t_test:.3g})")
    if pass_fail and a.shape[0] == 1 and b.shape[0] == 1:
        result.p_value = mcnemar_exact(a[0] > 0.5, b[0] > 0.5)["p_value"]
        return result, "exact McNemar test (one seed: item noise only)"
    return result, "paired t test over items (one seed: item noise only)"


def _record(arm: str, result: ArmDifference, test: str) -> dict:
    return {"arm": arm, **result.to_dict(), "test": test}


def length_adjusted(a: np.ndarray, b: np.ndarray, words_a: np.ndarray, words_b: np.ndarray) -> ArmDifference:
    """`compare_arms` on scores adjusted to the mean answer length, with the within-item slope on length."""
    y, words = np.vstack([a, b]), np.vstack([words_a, words_b])
    group = np.repeat([0.0, 1.0], [a.shape[0], b.shape[0]])[:, None] * np.ones_like(y)
    centred = [m - m.mean(axis=0, keepdims=True) for m in (y, words, group)]
    design = np.stack([centred[1].ravel(), centred[2].ravel()], axis=1)
    slope = float(np.linalg.lstsq(design, centred[0].ravel(), rcond=None)[0][0]) if design.any() else 0.0
    mean_words = words.mean()
    return compare_arms(a - slope * (words_a - mean_words), b - slope * (words_b - mean_words))


def words_matrix(arm: dict) -> Optional[np.ndarray]:
    rows = [(run["evaluation"].get("ifeval") or {}).get("answer_words") for run in arm["runs"]]
    return None if not rows or any(r is None for r in rows) else np.asarray(rows, dtype=np.float64)


def study_statistics(arms: Sequence[dict], primary: str) -> dict:
    """The primary comparisons (Holm-corrected), the A/A control and the length-controlled view of a study."""
    chosen = metric(primary)
    baseline = next(a for a in arms if a["role"] == "baseline")
    base_scores = arm_matrix(baseline, primary)
    found = {"primary_metric": primary, "label": chosen.label, "pass_fail": chosen.pass_fail,
             "baseline": baseline["name"], "comparisons": [], "aa_control": None, "length": []}
    if base_scores is None or base_scores.shape[1] < 2:
        found["missing"] = f"the baseline has no scores on {primary} (at least 2 items needed)"
        return found
    results = []
    for arm in arms:
        scores = arm_matrix(arm, primary)
        if arm["role"] not in ("arm", "aa_control") or scores is None:
            continue
        result, test = difference(base_scores, scores, chosen.pass_fail)
        if arm["role"] == "aa_control":
            found["aa_control"] = _record(arm["name"], result, test)  # alone: not in the Holm family
        else:
            results.append((arm["name"], result, test))
    adjust_study([r for _, r, _ in results])
    found["comparisons"] = [_record(name, result, test) for name, result, test in results]
    if chosen.pass_fail:
        found["length"] = length_view(arms, baseline, primary)
    return found


def length_view(arms: Sequence[dict], baseline: dict, primary: str) -> list[dict]:
    """Per trained arm: the mean answer length (words) with its seed spread, and its length-adjusted difference
    from the baseline on the primary metric."""
    view = []
    base_scores, base_words = arm_matrix(baseline, primary), words_matrix(baseline)
    for arm in arms:
        words = words_matrix(arm)
        if arm["role"] not in ARM_ROLES or words is None:
            continue
        mean, sd = spread(words.mean(axis=1))
        entry = {"arm": arm["name"], "mean_words": mean, "mean_words_sd": sd, "adjusted": None}
        if arm is not baseline and base_words is not None:
            adjusted = length_adjusted(base_scores, arm_matrix(arm, primary), base_words, words)
            entry["adjusted"] = adjusted.to_dict()  # uncorrected: a secondary view
        view.append(entry)
    return view
