"""Statistics for dataset studies: is arm B different from arm A, given training seeds AND evaluation items?

A study arm is trained with several seeds and every run answers the same items, so its scores form a matrix
X[seed, item] (IFEval pass/fail as 0/1, or a per-answer loss). Two sources of noise decide whether a difference
between arms is real:
- seeds: another seed (LoRA init, data order, the draw of rows) moves a run's mean score. This noise is shared by
  every item of a run, so resampling items alone cannot see it (the mistake of a per-item bootstrap of one run
  per arm: two runs of the same condition then differ "significantly");
- items: the benchmark is a sample of prompts; how much an arm's effect varies from item to item decides how well
  a mean over n items stands for the population of such items.

Model (a two-way random-effects decomposition, the method-of-moments form of the mixed model
score = item + arm + arm x item + seed(arm) + residual):
    diff      = mean(B) - mean(A)                                      (grand means of the two matrices)
    V_seed    = s_A^2 / n_A + s_B^2 / n_B       s^2: variance of the run means within an arm (seed noise + residual / n)
    V_item    = var_i(d_i) / n                  d_i = B[:, i].mean() - A[:, i].mean() (arm x item + residual)
    V         = V_seed + V_item - residual / n * (1 / n_A + 1 / n_B)  (the residual is in both terms: count it once)
and a t test with Satterthwaite's degrees of freedom, which are few when seeds are few (3 + 3 seeds: about 4),
so its intervals widen where a normal or bootstrap interval would be too narrow. Those degrees of freedom are
themselves estimated, and where one arm's seed noise (3 runs: 2 df) dominates the variance the t test calls up to ~8%
of no-differences significant at 5%. So the p-value reported is its worst case over every split of the variance
among the arms' seeds and the items (`worst_case_p`, a seeded Monte Carlo), and the interval and the minimum
detectable effect are read at the matching level (`worst_case_level`: ~0.02 for 3 seeds an arm).
`tests/eval/test_statistics.py` simulates thousands of studies with no true effect (equal and unequal seed noise, a
fixed baseline) and checks that at most ~5% are called significant, and that the stated power matches what the test
achieves with a planted effect.

For one run per arm with pass/fail items, the exact McNemar test (`mcnemar_exact`) is the right test; with several
comparisons in a study, `holm` adjusts the p-values (family-wise error at 5%).
"""

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from scipy import special, stats

ALPHA = 0.05  # significance level of every test, after Holm's correction within a study
POWER = 0.8  # the power that minimum detectable effects and sample sizes are stated for


@dataclass
class ArmDifference:
    """B - A on one metric, with the interval, test and design numbers a report needs."""
    difference: float  # mean(B) - mean(A)
    low: float  # the interval of the difference at `level` (a 1 - ALPHA interval in the worst case)
    high: float
    p_value: float  # two-sided, valid for any split of seed and item noise (before Holm's correction)
    se: float  # standard error of the difference
    df: float  # Satterthwaite degrees of freedom
    seeds_a: int
    seeds_b: int
    items: int
    seed_sd_a: float  # between-seed standard deviation of run means, arm A (NaN for one seed)
    seed_sd_b: float
    mde: float  # minimum detectable effect of this design: POWER to detect it at the test's level
    p_adjusted: Optional[float] = None  # after Holm's correction within the study (set by `adjust_study`)
    p_t_test: Optional[float] = None  # the Satterthwaite t test's own p (p_value is its worst case)
    level: float = ALPHA  # the level the t test's p is read at for a worst case of ALPHA (interval, mde)

    @property
    def significant(self) -> bool:
        return (self.p_adjusted if self.p_adjusted is not None else self.p_value) < ALPHA

    def verdict(self) -> str:
        if self.significant:
            return "significant"
        return f"no detectable difference (minimum detectable effect {self.mde:.3g})"

    def to_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def _matrix(scores, name: str) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]  # one seed
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name}: scores must be a (seeds, items) matrix with at least 2 items, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: scores must be finite")
    return x


def residual_variance(x: np.ndarray) -> float:
    """The seed x item residual of one arm's (seeds, items) matrix: what is left after the seed and item means
    (two-way ANOVA without replication); 0 for a single seed, where it cannot be told apart from the item effects."""
    n_seeds, n_items = x.shape
    if n_seeds < 2:
        return 0.0
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float((r ** 2).sum() / ((n_seeds - 1) * (n_items - 1)))


def compare_arms(a, b) -> ArmDifference:
    """The difference B - A of two arms scored on the same items (columns), each with one or more seeds (rows).
    With one seed in an arm its seed noise cannot be estimated: the test then sees item noise only (say so)."""
    a, b = _matrix(a, "arm A"), _matrix(b, "arm B")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the arms were scored on different numbers of items ({a.shape[1]} and {b.shape[1]})")
    (n_a, n), n_b = a.shape, b.shape[0]
    run_a, run_b = a.mean(axis=1), b.mean(axis=1)
    diff = float(b.mean() - a.mean())
    seed_terms = [run.var(ddof=1) / len(run) if len(run) > 1 else 0.0 for run in (run_a, run_b)]
    d_item = b.mean(axis=0) - a.mean(axis=0)
    v_item = float(d_item.var(ddof=1) / n)
    residual = residual_variance(a) / n / n_a + residual_variance(b) / n / n_b
    v = max(sum(seed_terms) + v_item - residual, sum(seed_terms), v_item / 2, 0.0)
    se = math.sqrt(v)
    parts = [(term, len(run) - 1) for term, run in zip(seed_terms, (run_a, run_b)) if len(run) > 1]
    parts.append((v_item, n - 1))
    denominator = sum(term ** 2 / dof for term, dof in parts)
    df = float(v ** 2 / denominator) if denominator > 0 else float(n - 1)
    seed_dfs = [len(run) - 1 for run in (run_a, run_b)]
    sd = [float(run.std(ddof=1)) if len(run) > 1 else float("nan") for run in (run_a, run_b)]
    if se == 0.0:  # identical answers everywhere: no difference, nothing to detect it with
        p = 1.0 if diff == 0.0 else 0.0
        return ArmDifference(diff, diff, diff, p, se, df, n_a, n_b, n, sd[0], sd[1], 0.0, p_t_test=p)
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    level = worst_case_level(seed_dfs, n - 1) if any(seed_dfs) else ALPHA
    half = float(stats.t.ppf(1 - level / 2, df)) * se
    valid_p = worst_case_p(p, seed_dfs, n - 1) if any(seed_dfs) else p
    return ArmDifference(diff, diff - half, diff + half, valid_p, se, df, n_a, n_b, n, sd[0], sd[1],
                         minimum_detectable_effect(se, df, alpha=level), p_t_test=p, level=level)


NULL_DRAWS, STEPS = 20000, 20  # worst_case_p's Monte Carlo: draws per split, steps of the variance shares tried


def _splits(components: int, steps: int = STEPS) -> list:
    """Every way to share a variance among `components` parts in multiples of 1/STEPS (a grid on the simplex):
    the compositions of `steps` into that many parts, as shares."""
    if components == 1:
        return [(steps / STEPS,)]
    return [(k / STEPS, *rest) for k in range(steps + 1) for rest in _splits(components - 1, steps - k)]


@lru_cache(maxsize=None)
def _null_p_values(dfs: tuple) -> np.ndarray:
    """For each split of the variance among components of `dfs` degrees of freedom (each variance estimated as
    chi^2/df), the sorted p-values of compare_arms' Satterthwaite t test under no difference: (splits, NULL_DRAWS).
    Seeded: the same answer every time."""
    rng = np.random.default_rng(0)
    out = []
    for split in _splits(len(dfs)):
        parts = [w * rng.chisquare(df, NULL_DRAWS) / df for w, df in zip(split, dfs)]
        v = np.maximum(sum(parts), 1e-300)
        df = v ** 2 / np.maximum(sum(part ** 2 / d for part, d in zip(parts, dfs)), 1e-300)
        t = rng.standard_normal(NULL_DRAWS) / np.sqrt(v)
        out.append(np.sort(2 * special.stdtr(df, -np.abs(t))))  # stats.t.sf's ufunc, without its checks
    return np.stack(out)


def _dfs(seed_dfs: Sequence[int], item_df: int) -> tuple:
    return (*sorted(max(int(d), 1) for d in seed_dfs if d > 0), max(int(item_df), 1))


def worst_case_p(p_value: float, seed_dfs: Sequence[int], item_df: int) -> float:
    """A p-value valid however the variance splits among each arm's seeds and the items. compare_arms' t test takes
    its degrees of freedom from estimated variances; where one arm's seed noise is estimated from 3 runs (2 df) and
    dominates, it calls up to ~8% of no-differences significant at 5% (simulated in tests/eval/test_statistics.py:
    3 seeds against a single greedy evaluation, or against 3 seeds of an arm whose seeds vary less). This is the
    largest chance, over every split of the variance, that the test gives a p-value at most `p_value` when there is
    no difference. seed_dfs: each arm's seeds - 1 (an arm of one run has no seed noise to estimate: 0)."""
    nulls = _null_p_values(_dfs(seed_dfs, item_df))
    return float(max(np.searchsorted(row, p_value, side="right") for row in nulls) / NULL_DRAWS)


def worst_case_level(seed_dfs: Sequence[int], item_df: int, alpha: float = ALPHA) -> float:
    """The level at which compare_arms' t test's own p-value must be read for `worst_case_p` to stay within `alpha`:
    the largest p whose worst case is at most `alpha` (for intervals and detectable effects that agree with it)."""
    nulls = _null_p_values(_dfs(seed_dfs, item_df))
    return float(min(row[max(int(alpha * NULL_DRAWS) - 1, 0)] for row in nulls))


def minimum_detectable_effect(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference that a two-sided test at `alpha` detects with probability `power`, for a
    difference estimated with standard error `se` on `df` degrees of freedom."""
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def power_of(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Probability that the two-sided t test rejects when the true difference is `effect` (noncentral t)."""
    if se == 0.0:
        return 1.0 if effect != 0.0 else alpha
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect) / se
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(effect: float, difference: ArmDifference, power: float = POWER, most: int = 1000) -> Optional[int]:
    """Seeds per arm for `power` at `effect`, keeping the items and the variance components of `difference`
    (seed noise shrinks as 1/seeds); None when even `most` seeds would not do (the item noise alone is too large)."""
    seeds = max(difference.seeds_a, difference.seeds_b)
    seed_part = (difference.seed_sd_a ** 2 if difference.seeds_a > 1 else 0.0) + \
                (difference.seed_sd_b ** 2 if difference.seeds_b > 1 else 0.0)
    item_part = max(difference.se ** 2 - seed_part / seeds, 0.0)
    if power_of(effect, math.sqrt(item_part), difference.items - 1) < power:
        return None  # not even with the seed noise gone
    for k in range(2, most + 1):
        se = math.sqrt(seed_part / k + item_part)
        # the test's level at k seeds an arm; its worst case lies where one arm's seeds dominate, so the one-seed-
        # component grid gives it at a tenth of the cost (and from 30 seeds on, 30's: a little conservative)
        level = worst_case_level((min(k, 30) - 1,), difference.items - 1)
        if power_of(effect, se, 2 * k - 2, alpha=level) >= power:
            return k
    return None


def mcnemar_exact(a_pass: Sequence[bool], b_pass: Sequence[bool]) -> dict:
    """Exact McNemar test of paired pass/fail verdicts (one run per arm): only the discordant items count; under no
    difference each is B's win with probability 1/2, so p is a two-sided binomial tail."""
    a, b = np.asarray(a_pass, dtype=bool), np.asarray(b_pass, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired verdicts must be two lists of the same length, got {a.shape} and {b.shape}")
    b_only, a_only = int((b & ~a).sum()), int((a & ~b).sum())
    p = sign_test_p(b_only, a_only)
    return {"b_only": b_only, "a_only": a_only, "p_value": p, "difference": (b_only - a_only) / max(a.size, 1)}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: `wins` against `losses` (ties dropped) under a fair coin."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(min(1.0, stats.binomtest(wins, n, 0.5).pvalue))


def holm(p_values: Sequence[float]) -> list:
    """Holm's step-down adjustment: the family-wise error rate of all the comparisons stays at the level used."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def adjust_study(differences: Sequence[ArmDifference]) -> None:
    """Sets `p_adjusted` on every difference of one study (one family of comparisons on its primary metric)."""
    for difference, p in zip(differences, holm([d.p_value for d in differences])):
        difference.p_adjusted = p
