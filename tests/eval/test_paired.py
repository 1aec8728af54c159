"""lit_gpt/eval/paired.py: one evaluation folder against another, item by item."""

import json
import random

import pytest
from scipy import stats

from lit_gpt.eval.paired import compare_evaluations, compare_runs, comparison_markdown
from lit_gpt.eval.statistics import (compare_arms, holm, mcnemar_exact, minimum_detectable_effect, worst_case_level,
                                     worst_case_p)
from lit_gpt.utils import UserError


def write_eval(folder, ifeval=None, nll=None):
    """An evaluate.py out_dir: results.json and the per-item files (rows as evaluate.py writes them); nll: each
    answer's mean NLL per token."""
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    if ifeval is not None:
        (folder / "ifeval_responses.jsonl").write_text("".join(
            json.dumps({"key": i, "prompt": prompt, "response": "...", "strict": strict, "loose": loose}) + "\n"
            for i, (prompt, strict, loose) in enumerate(ifeval)))
    if nll is not None:
        (folder / "reference_loss.jsonl").write_text("".join(  # nll: summed over the answer's tokens
            json.dumps({"id": f"ref-{i}", "instruction": f"q{i}", "nll": value * (5 + i), "tokens": 5 + i}) + "\n"
            for i, value in enumerate(nll)))
    return folder


def random_verdicts(rng, n, p):
    return [[rng.random() < p for _ in range(rng.randint(1, 3))] for _ in range(n)]


def test_each_metric_is_tested_item_by_item_and_holm_adjusted(tmp_path):
    rng = random.Random(0)
    prompts = [f"prompt {i}" for i in range(60)]
    base_strict, ours_strict = random_verdicts(rng, 60, 0.5), random_verdicts(rng, 60, 0.8)
    base_loose, ours_loose = random_verdicts(rng, 60, 0.6), random_verdicts(rng, 60, 0.6)
    base_nll = [rng.uniform(1, 2) for _ in range(40)]
    ours_nll = [v - 0.1 + rng.gauss(0, 0.05) for v in base_nll]
    # the baseline's rows in another order: items are paired by prompt / answer, not by line
    base_rows = list(zip(prompts, base_strict, base_loose))
    shuffled = base_rows[30:] + base_rows[:30]
    baseline = write_eval(tmp_path / "base", shuffled, base_nll)
    ours = write_eval(tmp_path / "ours", list(zip(prompts, ours_strict, ours_loose)), ours_nll)

    comparison = compare_evaluations(ours, baseline)
    metrics = comparison["metrics"]
    assert list(metrics) == ["ifeval_prompt_strict", "ifeval_prompt_loose", "reference_nll"]
    for kind, base, mine in (("strict", base_strict, ours_strict), ("loose", base_loose, ours_loose)):
        a, b = [all(v) for v in base], [all(v) for v in mine]
        expected = mcnemar_exact(a, b)
        m = metrics[f"ifeval_prompt_{kind}"]
        assert m["discordant"] == {"this_only": expected["b_only"], "baseline_only": expected["a_only"]}
        assert m["p_value"] == expected["p_value"] and m["difference"] == pytest.approx(sum(b) / 60 - sum(a) / 60)
    expected_nll = compare_arms(base_nll, ours_nll)  # per answer, per token: not the sums in the files
    assert metrics["reference_nll"]["difference"] == pytest.approx(expected_nll.difference)
    assert (metrics["reference_nll"]["low"], metrics["reference_nll"]["high"]) == pytest.approx(
        (expected_nll.low, expected_nll.high))
    assert [m["p_holm"] for m in metrics.values()] == holm([m["p_value"] for m in metrics.values()])
    assert metrics["reference_nll"]["significant"] and metrics["reference_nll"]["difference"] < 0
    assert metrics["ifeval_prompt_strict"]["significant"]
    table = comparison_markdown(comparison)
    assert "| reference_nll |" in table and "item noise only" in table


def test_the_same_answers_again_are_no_difference(tmp_path):
    rng = random.Random(1)
    rows = list(zip([f"p{i}" for i in range(20)], random_verdicts(rng, 20, 0.5), random_verdicts(rng, 20, 0.5)))
    nll = [rng.uniform(1, 2) for _ in range(20)]
    comparison = compare_evaluations(write_eval(tmp_path / "a", rows, nll), write_eval(tmp_path / "b", rows, nll))
    for m in comparison["metrics"].values():
        assert m["difference"] == 0 and m["p_value"] == 1.0 and not m["significant"]


def test_folders_that_cannot_be_paired_are_refused(tmp_path):
    rows = [(f"p{i}", [True], [True]) for i in range(5)]
    ours = write_eval(tmp_path / "ours", rows, [1.0] * 5)
    with pytest.raises(UserError, match="not an evaluate.py output folder"):
        compare_evaluations(ours, tmp_path / "nowhere")
    other_prompts = write_eval(tmp_path / "other", [(f"x{i}", [True], [True]) for i in range(5)])
    with pytest.raises(UserError, match="hold different items"):
        compare_evaluations(ours, other_prompts)
    fewer = write_eval(tmp_path / "fewer", rows[:4])
    with pytest.raises(UserError, match="hold different items"):
        compare_evaluations(ours, fewer)
    nothing_shared = write_eval(tmp_path / "loss-only", None, [1.0] * 5)
    with pytest.raises(UserError, match="no task in common"):
        compare_evaluations(write_eval(tmp_path / "ifeval-only", rows), nothing_shared)


def test_several_runs_a_side_are_tested_with_seed_and_item_noise(tmp_path):
    """compare_runs: each metric's (runs, items) matrices, aligned by item whatever the line order, through
    statistics.compare_arms (seed + item noise), Holm-adjusted; each run's mean kept."""
    rng = random.Random(2)
    prompts = [f"prompt {i}" for i in range(30)]
    base_rows = list(zip(prompts, random_verdicts(rng, 30, 0.5), random_verdicts(rng, 30, 0.6)))
    base_nll = [rng.uniform(1, 2) for _ in range(25)]
    baseline = write_eval(tmp_path / "base", base_rows[10:] + base_rows[:10], base_nll)
    runs, strict, nll = [], [], []
    for seed in range(3):
        rows = list(zip(prompts, random_verdicts(rng, 30, 0.7), random_verdicts(rng, 30, 0.7)))
        values = [v + 0.05 * seed + rng.gauss(0, 0.02) for v in base_nll]
        runs.append(write_eval(tmp_path / f"run{seed}", rows, values))
        strict.append([float(all(v)) for _, v, _ in rows])
        nll.append(values)
    comparison = compare_runs(runs, [baseline])
    metrics = comparison["metrics"]
    assert list(metrics) == ["ifeval_prompt_strict", "ifeval_prompt_loose", "reference_nll"]
    expected = compare_arms([[float(all(v)) for _, v, _ in base_rows]], strict)
    m = metrics["ifeval_prompt_strict"]
    assert (m["difference"], m["p_satterthwaite"]) == pytest.approx((expected.difference, expected.p_t_test))
    assert m["p_value"] == worst_case_p(expected.p_t_test, (2,), 29) >= expected.p_t_test  # 3 runs: 2 seed df
    # the interval and the detectable effect at the level the worst case allows: wider than the t test's own at 5%,
    # and agreeing with the p-value
    assert m["level"] == worst_case_level((2,), 29) < 0.05
    assert m["mde"] > minimum_detectable_effect(expected.se, expected.df)
    t_half = stats.t.ppf(0.975, expected.df) * expected.se
    assert m["low"] < expected.difference - t_half and m["high"] > expected.difference + t_half
    assert m["run_means"][1] == pytest.approx([sum(run) / 30 for run in strict]) and len(m["run_means"][0]) == 1
    expected_nll = compare_arms([base_nll], nll)
    assert metrics["reference_nll"]["p_value"] == worst_case_p(expected_nll.p_t_test, (2,), 24)
    assert metrics["reference_nll"]["mde"] > minimum_detectable_effect(expected_nll.se, expected_nll.df)
    assert [m["p_holm"] for m in metrics.values()] == holm([m["p_value"] for m in metrics.values()])
    for m in metrics.values():
        assert (m["low"] > 0 or m["high"] < 0) == (m["p_value"] < 0.05)
    table = comparison_markdown(comparison)
    assert table.startswith("## 3 runs") and "seed noise" in table and "run means" in table


def test_several_runs_that_cannot_be_compared_are_refused(tmp_path):
    rows = [(f"p{i}", [True], [False]) for i in range(6)]
    base = write_eval(tmp_path / "base", rows)
    runs = [write_eval(tmp_path / f"run{i}", rows) for i in range(2)]
    with pytest.raises(UserError, match=f"--runs {tmp_path / 'nowhere'}: not an evaluate.py output folder"):
        compare_runs([*runs, tmp_path / "nowhere"], [base])
    other = write_eval(tmp_path / "other", [(f"x{i}", [True], [False]) for i in range(6)])
    with pytest.raises(UserError, match="hold different items"):
        compare_runs([*runs, other], [base])
    with pytest.raises(UserError, match="share no task"):
        compare_runs(runs, [write_eval(tmp_path / "loss-only", None, [1.0] * 6)])
