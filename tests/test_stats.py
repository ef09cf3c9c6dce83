"""Aggregates over seeds and the two tests behind the report's verdicts, on numbers worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.reporting.stats import aggregate, mcnemar, welch


def test_aggregate_matches_numpy_and_the_t_interval():
    values = [0.9858, 0.9842, 0.9861]
    result = aggregate(values)
    assert result.mean == pytest.approx(np.mean(values)) and result.std == pytest.approx(np.std(values, ddof=1))
    half = 4.302652729911275 * np.std(values, ddof=1) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (result.ci_low, result.ci_high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert result.n == 3


def test_one_value_has_no_spread():
    assert aggregate([0.5]) == aggregate([0.5]).__class__(0.5, 0.0, 1, 0.5, 0.5)


def test_mcnemar_counts_only_the_images_the_models_disagree_on():
    # 1000 images: both right on 900, only ours right on 12, only the reference right on 3, both wrong on 85
    ours = np.array([True] * 900 + [True] * 12 + [False] * 3 + [False] * 85)
    reference = np.array([True] * 900 + [False] * 12 + [True] * 3 + [False] * 85)
    result = mcnemar(ours, reference)
    # exact two-sided binomial: 2 * P(X <= 3), X ~ Binomial(15, 1/2)
    by_hand = 2 * sum(math.comb(15, k) for k in range(4)) / 2 ** 15
    assert result.p_value == pytest.approx(by_hand) and result.p_value == pytest.approx(0.03515625)
    assert result.difference == pytest.approx(0.009) and result.verdict == "better"
    half = 1.96 * math.sqrt(15 - 9 ** 2 / 1000) / 1000
    assert (result.ci_low, result.ci_high) == pytest.approx((0.009 - half, 0.009 + half))


def test_mcnemar_without_disagreement_is_within_noise():
    same = np.array([True, False, True])
    assert mcnemar(same, same).verdict == "within noise" and mcnemar(same, same).p_value == 1.0


def test_welch_on_separated_and_on_overlapping_seeds():
    better = welch([0.990, 0.991, 0.992], [0.980, 0.981, 0.982])
    assert better.verdict == "better" and better.difference == pytest.approx(0.010)
    # equal variances and sizes: t = 0.01 / sqrt(2 * 0.001**2 / 3), df = 4
    t = 0.010 / math.sqrt(2 * 0.001 ** 2 / 3)
    from scipy import stats

    assert better.p_value == pytest.approx(2 * stats.t.sf(t, 4))
    assert better.ci_low < 0.010 < better.ci_high
    assert welch([0.98, 0.99, 0.97], [0.985, 0.975, 0.98]).verdict == "within noise"
    # two seeds each, 2 pp apart: t = -2.83 on 2 degrees of freedom, p = 0.106
    two = welch([0.98, 0.97], [0.99, 1.0])
    assert two.difference == pytest.approx(-0.02) and two.p_value == pytest.approx(0.1056, abs=1e-3)
    assert two.verdict == "within noise"


def test_identical_reruns_give_no_evidence_unless_they_differ():
    same = welch([0.5, 0.5], [0.5, 0.5])
    assert same.verdict == "within noise" and same.p_value == 1.0 and same.difference == 0.0
    # deterministic reruns on both sides (no spread) that differ: no t-test to run, a certain difference
    apart = welch([0.6, 0.6], [0.5, 0.5])
    assert apart.p_value == 0.0 and apart.difference == pytest.approx(0.1) and apart.verdict == "better"
    assert (apart.ci_low, apart.ci_high) == pytest.approx((0.1, 0.1))
    assert welch([0.5, 0.5], [0.6, 0.6]).verdict == "worse"


def test_one_seed_has_a_mean_and_no_spread_to_diff_or_show():
    from pipeline.reporting.stats import aggregate

    assert aggregate([0.91]).as_metrics("test_accuracy") == {"test_accuracy_mean": 0.91, "test_accuracy_n": 1.0}
    assert set(aggregate([0.91, 0.93]).as_metrics("acc")) == {"acc_mean", "acc_n", "acc_std", "acc_ci95_low",
                                                              "acc_ci95_high"}


def test_metrics_reach_mlflow_with_four_significant_digits():
    from pipeline.tracking.store import rounded

    assert rounded({"val_accuracy": 0.9856666922569275, "loss": 8.692314281688596e-07}) == {
        "val_accuracy": 0.9857, "loss": 8.692e-07}
