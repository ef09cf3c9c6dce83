"""Is a difference real? Aggregates over seeds, and the test that fits what was run.

- Several seeds per setting: Welch's t-test on the per-seed test accuracies. Seed-to-seed
  variation (initialization, shuffling, dropout) is the larger part of the noise, and it is what
  the seeds measure.
- One seed per setting: McNemar's exact test on the two models' predictions over the same test
  images (only the images one model gets right and the other wrong count). It covers the
  sampling of the test set, not the training randomness: another seed may reverse the verdict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # a difference is called better or worse when p < ALPHA; else within noise


@dataclass(frozen=True)
class Aggregate:
    """Mean, sample standard deviation, count and the 95 % confidence interval of the mean."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float

    def as_metrics(self, name: str) -> dict[str, float]:
        """Mean and count; spread and interval only where there is one (two seeds or more): a
        single seed's "std 0" would read as a measurement in `dvc metrics diff` and the UI."""
        spread = {f"{name}_std": self.std, f"{name}_ci95_low": self.ci_low, f"{name}_ci95_high": self.ci_high}
        return {f"{name}_mean": self.mean, f"{name}_n": float(self.n), **(spread if self.n > 1 else {})}


def aggregate(values) -> Aggregate:
    """A single value has no spread: std 0 and an interval of just that value."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return Aggregate(mean, 0.0, len(values), mean, mean)
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * std / math.sqrt(len(values))
    return Aggregate(mean, std, len(values), mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """A setting against its sweep's reference: difference in test accuracy, its 95 % CI, p."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= ALPHA:
            return "within noise"
        return "better" if self.difference > 0 else "worse"


def welch(accuracies, reference) -> Comparison:
    """Per-seed test accuracies of a setting against those of the reference (two or more each)."""
    a, b = np.asarray(accuracies, dtype=float), np.asarray(reference, dtype=float)
    difference = float(a.mean() - b.mean())
    if a.std() == 0 and b.std() == 0:  # identical reruns: nothing to test against
        return Comparison(difference, difference, difference, 1.0 if difference == 0 else 0.0)
    with warnings.catch_warnings():  # a setting whose seeds agree exactly: scipy warns of lost precision, rightly
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(0.95)
    return Comparison(difference, float(interval.low), float(interval.high), float(result.pvalue))


def mcnemar(correct, reference_correct) -> Comparison:
    """Two models' per-image correctness on one test set (boolean arrays, same images)."""
    correct, reference_correct = np.asarray(correct, bool), np.asarray(reference_correct, bool)
    n = len(correct)
    only_this = int(np.sum(correct & ~reference_correct))
    only_reference = int(np.sum(~correct & reference_correct))
    discordant = only_this + only_reference
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_this, discordant, 0.5).pvalue)
    difference = (only_this - only_reference) / n
    # Wald interval of a difference of paired proportions
    half = 1.96 * math.sqrt(max(discordant - (only_this - only_reference) ** 2 / n, 0.0)) / n
    return Comparison(difference, difference - half, difference + half, p_value)


def student(values, reference) -> Comparison:
    """Student's t-test with the two settings' seeds pooled into one spread: where one setting has a
    single seed (its spread unmeasured, taken as the other's) and the other two or more."""
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    difference = float(a.mean() - b.mean())
    freedom = len(a) + len(b) - 2
    pooled = (np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)) / freedom
    error = math.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    if error == 0:  # identical reruns: nothing to test against
        return Comparison(difference, difference, difference, 1.0 if difference == 0 else 0.0)
    half = float(stats.t.ppf(0.975, freedom)) * error
    p_value = float(2 * stats.t.sf(abs(difference) / error, freedom))
    return Comparison(difference, difference - half, difference + half, p_value)


POWER = 0.8  # the chance a study of the seeds needed has of detecting the difference, if it is there


def seeds_needed(difference: float, spread: float, most: int = 1000) -> float:
    """The fewest seeds per setting (two or more) with which Welch's test detects `difference` with
    POWER at ALPHA, when the seeds of each setting spread by `spread` (a standard deviation): the
    power of statsmodels' two-sample t-test, counted up (its solver fails where two seeds already
    do); inf past `most`."""
    from statsmodels.stats.power import TTestIndPower

    if difference == 0:
        return math.inf
    if spread == 0:
        return 2  # no seed noise: two seeds each show the difference
    effect, analysis = abs(difference) / spread, TTestIndPower()
    return next((seeds for seeds in range(2, most + 1)
                 if analysis.power(effect, nobs1=seeds, alpha=ALPHA, ratio=1.0, alternative="two-sided") >= POWER),
                math.inf)
