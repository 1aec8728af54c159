"""Paired bootstrap confidence intervals for the difference of two models on the same evaluation items.

Both models are scored on the same prompts (IFEval verdicts, per-answer losses), so the comparison resamples
prompts, not models: each resample draws len(items) prompt indices with replacement and takes the mean difference
over them. The 2.5th and 97.5th percentiles of those means bound a 95% interval of the true mean difference; when
it contains 0 the data do not show a difference ("no significant difference"), whatever the point estimate says.
"""

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass
class PairedDifference:
    difference: float  # mean of (b - a) over the items
    low: float  # 95% interval (or `level`)
    high: float
    items: int
    resamples: int
    level: float = 0.95

    @property
    def significant(self) -> bool:
        return not self.low <= 0.0 <= self.high

    def items_needed(self) -> "int | None":
        """Roughly how many items an interval excluding 0 would take if the difference stayed what it is: the
        interval's half-width shrinks as 1/sqrt(items). None when the difference is 0 (no size would show it)."""
        if self.difference == 0.0:
            return None
        half_width = (self.high - self.low) / 2
        return max(self.items, math.ceil(self.items * (half_width / abs(self.difference)) ** 2))

    def verdict(self) -> str:
        return "significant" if self.significant else "no significant difference"

    def to_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant, "items_needed": self.items_needed()}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> PairedDifference:
    """Percentile bootstrap of mean(b - a) over paired items (a[i], b[i] are the two models on item i)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired scores must be two non-empty lists of the same length, got {a.shape} and {b.shape}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # in chunks: 1000 x items indices at a time
        n = min(1000, resamples - start)
        means[start: start + n] = diff[rng.integers(0, diff.size, size=(n, diff.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high), int(diff.size), resamples, level)
