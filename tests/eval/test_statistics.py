"""lit_gpt/eval/statistics.py: known values, and simulated studies (false positives under no effect, power)."""

import math

import numpy as np
import pytest
from scipy import stats

from lit_gpt.eval.statistics import (ALPHA, adjust_study, compare_arms, holm, mcnemar_exact, minimum_detectable_effect,
                                     power_of, residual_variance, seeds_needed, sign_test_p, worst_case_level,
                                     worst_case_p)


def simulate_binary(rng, seeds: int, items: int, effect_logit: float, seed_sd: float = 0.25, interaction_sd: float = 0.3,
                    fixed_a: bool = False):
    """(A, B) pass/fail matrices: item difficulty shared by both arms, a seed effect per run, an arm x item effect.
    fixed_a: A is one run of a fixed model (a base model's greedy evaluation: no seed of its own)."""
    difficulty = rng.normal(0.0, 1.5, items)

    def arm(shift, runs, sd):
        logits = difficulty + rng.normal(0.0, interaction_sd, items) + rng.normal(0.0, sd, (runs, 1)) + shift
        return (rng.random((runs, items)) < 1 / (1 + np.exp(-logits))).astype(float)

    return arm(0.0, *((1, 0.0) if fixed_a else (seeds, seed_sd))), arm(effect_logit, seeds, seed_sd)


def simulate_gaussian(rng, seeds: int, items: int, effect: float, seed_sd=0.05, interaction_sd=0.2, noise_sd=0.5,
                      fixed_a: bool = False, seed_sd_a=None):
    """seed_sd_a: arm A's seed noise where it differs from B's (seed_sd)."""
    item = rng.normal(0.0, 1.0, items)

    def arm(shift, runs, sd):
        return (item + rng.normal(0.0, interaction_sd, items) + rng.normal(0.0, sd, (runs, 1))
                + rng.normal(0.0, noise_sd, (runs, items)) + shift)

    a_design = (1, 0.0) if fixed_a else (seeds, seed_sd if seed_sd_a is None else seed_sd_a)
    return arm(0.0, *a_design), arm(effect, seeds, seed_sd)


def test_mcnemar_exact_known_values():
    # 4 discordant items, all B's: p = 2 * 0.5^4 = 0.125 (what a percentile bootstrap wrongly called significant)
    a = [False] * 4 + [True] * 28
    b = [True] * 32
    result = mcnemar_exact(a, b)
    assert (result["b_only"], result["a_only"]) == (4, 0)
    assert result["p_value"] == pytest.approx(0.125)
    assert sign_test_p(6, 0) == pytest.approx(2 * 0.5 ** 6)
    assert sign_test_p(10, 10) == pytest.approx(1.0)
    assert sign_test_p(0, 0) == 1.0


def test_holm_known_values():
    # the textbook example: p = 0.01, 0.04, 0.03, 0.005 -> 0.03, 0.06, 0.06, 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]


def test_one_seed_per_arm_is_a_paired_t_test_over_items():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50) + 0.3
    d = compare_arms(a, b)
    t = stats.ttest_rel(b, a)
    assert d.difference == pytest.approx(float((b - a).mean()))
    assert d.p_value == pytest.approx(t.pvalue)
    assert d.df == pytest.approx(49)
    assert math.isnan(d.seed_sd_a)


def test_seed_noise_widens_the_interval():
    """A shift shared by every item of one run (seed noise) must not look like a significant effect."""
    rng = np.random.default_rng(1)
    items = rng.normal(size=300)
    a = np.stack([items + s + rng.normal(0, 0.05, 300) for s in (0.0, 0.3, -0.3)])
    b = np.stack([items + s + rng.normal(0, 0.05, 300) for s in (0.25, -0.2, 0.1)])
    d = compare_arms(a, b)
    assert not d.significant
    assert d.high - d.low > 0.5  # the seed spread (~0.3) dominates, not the tiny item noise
    # the item-only view of the same data (first seeds alone) would have called it significant
    assert compare_arms(a[0], b[0]).significant


def test_residual_variance_of_an_additive_matrix_is_zero():
    x = np.add.outer([0.0, 1.0, 2.0], np.arange(10.0))
    assert residual_variance(x) == pytest.approx(0.0)
    assert residual_variance(x[:1]) == 0.0


def test_identical_arms_and_input_checks():
    same = np.ones((3, 20))
    d = compare_arms(same, same)
    assert d.difference == 0.0 and d.p_value == 1.0 and not d.significant
    with pytest.raises(ValueError, match="different numbers of items"):
        compare_arms(np.zeros((2, 5)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="at least 2 items"):
        compare_arms([1.0], [1.0])


def test_adjust_study_sets_holm_p_values():
    rng = np.random.default_rng(2)
    diffs = [compare_arms(*simulate_gaussian(rng, 3, 100, effect)) for effect in (0.0, 0.0, 1.0)]
    adjust_study(diffs)
    assert [d.p_adjusted for d in diffs] == pytest.approx(holm([d.p_value for d in diffs]))
    assert diffs[2].significant


def test_mde_and_power_agree():
    se, df = 0.02, 4.0
    mde = minimum_detectable_effect(se, df)
    assert power_of(mde, se, df) == pytest.approx(0.8, abs=0.03)  # noncentral t vs the textbook sum of quantiles
    assert power_of(0.0, se, df) == pytest.approx(ALPHA, abs=1e-9)


@pytest.mark.parametrize("seeds", [3, 5])
def test_false_positive_rate_of_aa_comparisons_on_pass_fail_data(seeds):
    """1,000 simulated A/A studies (same condition, other seeds) on 200 pass/fail items: at most 6% significant."""
    rng = np.random.default_rng(seeds)
    hits = sum(compare_arms(*simulate_binary(rng, seeds, 200, 0.0)).significant for _ in range(1000))
    assert hits / 1000 <= 0.06, hits


def test_false_positive_rate_of_aa_comparisons_on_losses():
    rng = np.random.default_rng(7)
    hits = sum(compare_arms(*simulate_gaussian(rng, 3, 150, 0.0, seed_sd=0.1)).significant for _ in range(1000))
    assert hits / 1000 <= 0.06, hits


@pytest.mark.parametrize("kind", ["pass_fail", "losses"])
def test_false_positive_rate_of_a_fixed_baseline_against_seeded_runs(kind):
    """compare_runs' design (scripts/compare_evaluations.py): a base model evaluated once, greedily (no seed noise of
    its own), against 3 seeds of a fine-tune that changes nothing on average: at most 6% of 1,000 studies significant
    (the fine-tune's seed noise is counted from its runs' spread, not assumed away)."""
    rng = np.random.default_rng(11)
    simulate = (lambda: simulate_binary(rng, 3, 128, 0.0, fixed_a=True)) if kind == "pass_fail" else (
        lambda: simulate_gaussian(rng, 3, 150, 0.0, seed_sd=0.1, fixed_a=True))
    assert sum(compare_arms(*simulate()).significant for _ in range(1000)) / 1000 <= 0.06


@pytest.mark.parametrize("fixed_a", [True, False])
def test_worst_case_p_keeps_dominant_seed_noise_at_five_percent(fixed_a):
    """Where one arm's seed noise (3 runs, 2 df) dominates, the t test's own p calls more than 6.5% of 1,000
    no-difference studies significant; the worst-case p at most 6%. Against a single greedy baseline run, and 3
    seeds against 3 seeds of an arm whose seeds vary far less (the studies' design)."""
    rng = np.random.default_rng(12)
    studies = [compare_arms(*simulate_gaussian(rng, 3, 150, 0.0, seed_sd=0.2, fixed_a=fixed_a, seed_sd_a=0.0))
               for _ in range(1000)]
    assert sum(d.p_t_test < ALPHA for d in studies) / 1000 > 0.065
    assert sum(d.significant for d in studies) / 1000 <= 0.06
    assert all(d.p_value >= d.p_t_test for d in studies)


def test_worst_case_p_is_at_least_the_p_value_and_grows_with_it():
    ps = [worst_case_p(p, (2,), 127) for p in (0.001, 0.01, 0.02, 0.05, 0.2, 0.5, 1.0)]
    assert ps == sorted(ps) and ps[-1] == 1.0
    assert all(w >= p for w, p in zip(ps, (0.001, 0.01, 0.02, 0.05, 0.2, 0.5)))
    assert 0.07 < worst_case_p(0.05, (2,), 127) < 0.09  # 3 seeds: the t test's 5% is ~8% at its worst
    assert worst_case_p(0.05, (8,), 127) < worst_case_p(0.05, (2,), 127)  # more seeds, less to correct
    level = worst_case_level((2,), 127)  # the t test's own p must be below this for a worst case within 5%
    assert 0.015 < level < 0.04 and worst_case_p(level, (2,), 127) <= ALPHA < worst_case_p(level * 1.05, (2,), 127)
    assert worst_case_p(0.05, (0, 2), 127) == worst_case_p(0.05, (2,), 127)  # an arm of one run adds no component


def test_worst_case_of_two_seeded_arms_lies_where_one_arm_dominates():
    """The full grid over both arms' seeds and the items finds the same worst case as one seed component (what
    seeds_needed relies on), within the Monte Carlo's noise."""
    assert worst_case_level((2, 2), 127) == pytest.approx(worst_case_level((2,), 127), rel=0.15)
    assert worst_case_p(0.05, (2, 2), 127) == pytest.approx(worst_case_p(0.05, (2,), 127), abs=0.006)


def test_compare_arms_reports_the_worst_case_and_its_interval():
    rng = np.random.default_rng(5)
    d = compare_arms(*simulate_gaussian(rng, 3, 100, 0.1))
    assert d.p_value == worst_case_p(d.p_t_test, (2, 2), 99) > d.p_t_test
    assert d.level == worst_case_level((2, 2), 99) < ALPHA
    half = stats.t.ppf(1 - d.level / 2, d.df) * d.se
    assert (d.low, d.high) == pytest.approx((d.difference - half, d.difference + half))
    assert d.mde == pytest.approx(minimum_detectable_effect(d.se, d.df, alpha=d.level))
    one_seed = compare_arms(*(side[0] for side in simulate_gaussian(rng, 3, 100, 0.1)))
    assert one_seed.p_value == one_seed.p_t_test and one_seed.level == ALPHA  # item noise only: nothing to correct


def test_stated_power_matches_achieved_power():
    """With a planted effect, the share of studies that detect it matches the power the method states for it."""
    rng = np.random.default_rng(11)
    effect = 0.12
    stated, detected = [], 0
    for _ in range(1000):
        d = compare_arms(*simulate_gaussian(rng, 3, 150, effect))
        stated.append(power_of(effect, d.se, d.df, alpha=d.level))
        detected += d.significant
    assert abs(detected / 1000 - np.mean(stated)) <= 0.10, (detected, np.mean(stated))
    assert 0.2 < detected / 1000 < 0.95  # the check is informative: neither hopeless nor trivial


def test_seeds_needed_grows_with_seed_noise():
    rng = np.random.default_rng(3)
    quiet = compare_arms(*simulate_gaussian(rng, 3, 300, 0.0, seed_sd=0.01))
    noisy = compare_arms(*simulate_gaussian(rng, 3, 300, 0.0, seed_sd=0.2))
    k_quiet, k_noisy = seeds_needed(0.15, quiet), seeds_needed(0.15, noisy)
    assert k_quiet is not None and k_noisy is not None and k_noisy > k_quiet
