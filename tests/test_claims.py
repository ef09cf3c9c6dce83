"""The homework's claims as data, judged on run records: the verdicts the kept reports' numbers
gave by hand, the tests and seeds needed against independent calculations, and a claims file
checked as params.yaml is."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from pipeline.params.file import ParamsError
from pipeline.reporting.claims import Check, Claim, Claims, judge, judge_all, read_claims
from pipeline.reporting.claims import by_setting as grouped
from pipeline.reporting.homework import read_homework
from pipeline.reporting.records import RunRecord, dump, read_records
from pipeline.reporting.stats import ALPHA, POWER, seeds_needed, student
from tests.helpers import REPO

HOMEWORK = read_homework(REPO / "reports" / "homework_results.yaml")
CLAIMS, SETTINGS = read_claims(REPO / "reports" / "claims.yaml", HOMEWORK)
EARLIER = REPO / "docs" / "reports" / "runs" / "2026-12-04-sapphire-rapids-and-zen5.json"

# docs/results.md's hand-written table before the claims were data (commit 03f7211), check by check.
HAND_WRITTEN = {
    ("mnist-kernel", "mnist-k5-s1", "test_accuracy"): "confirmed",  # "test: confirmed, no difference"
    ("mnist-kernel", "mnist-k7-s1", "test_accuracy"): "confirmed",
    ("mnist-kernel", "mnist-k5-s1", "train_loss"): "within noise",  # "train loss and accuracy: within noise"
    ("mnist-kernel", "mnist-k7-s1", "train_loss"): "within noise",
    ("mnist-kernel", "mnist-k5-s1", "train_accuracy"): "within noise",
    ("mnist-kernel", "mnist-k7-s1", "train_accuracy"): "within noise",
    ("mnist-strides", "mnist-k5-s2", "test_accuracy"): "within noise",  # "within noise by the report's Welch test"
    ("mnist-strides", "mnist-k5-s3", "test_accuracy"): "within noise",
    ("mnist-strides", "mnist-k5-s2", "train_loss"): "within noise",  # "train loss: within noise"
    ("mnist-strides", "mnist-k5-s3", "train_loss"): "within noise",
    ("mnist-l2", "mnist-k3-s1-l2", "train_loss"): "confirmed",
    ("mnist-l2", "mnist-k3-s1-l2", "train_accuracy"): "confirmed",
    ("cifar10-kernel-train", "cifar10-k5-s1", "train_loss"): "contradicted",
    ("cifar10-kernel-train", "cifar10-k7-s1", "train_loss"): "contradicted",
    ("cifar10-kernel-train", "cifar10-k5-s1", "train_accuracy"): "contradicted",
    ("cifar10-kernel-train", "cifar10-k7-s1", "train_accuracy"): "contradicted",
    ("cifar10-kernel-test", "cifar10-k5-s1", "test_accuracy"): "within noise",
    ("cifar10-kernel-test", "cifar10-k7-s1", "test_accuracy"): "confirmed",
    ("cifar10-strides", "cifar10-k5-s2", "test_accuracy"): "confirmed",
    ("cifar10-l2", "cifar10-k3-s1-l2", "train_loss"): "confirmed",
    ("cifar10-l2", "cifar10-k3-s1-l2", "train_accuracy"): "confirmed",
    ("cifar10-l2", "cifar10-k3-s1-l2", "test_accuracy"): "confirmed",
    ("cifar10-gray", "cifar10-k3-s1", "test_accuracy"): "contradicted",  # color is better
}


def test_the_kept_reports_numbers_give_the_hand_written_verdicts():
    rows = judge_all(CLAIMS, SETTINGS, read_records([EARLIER]), HOMEWORK)
    found = {(row.claim, row.check.setting, row.check.metric): row.verdict for row in rows}
    assert {key: found[key] for key in HAND_WRITTEN} == HAND_WRITTEN
    # the two checks the hand-written table left out: the MNIST strides' validation and train accuracy
    assert set(found) - set(HAND_WRITTEN) == {("mnist-strides", s, m) for s in ("mnist-k5-s2", "mnist-k5-s3")
                                              for m in ("val_accuracy", "train_accuracy")}
    strides3 = next(row for row in rows if row.check.setting == "mnist-k5-s3" and row.check.metric == "test_accuracy")
    assert (round(strides3.comparison.p_value, 2), strides3.needed) == (0.21, "6")  # the open claim, and its seeds


def _power(effect: float, seeds: int) -> float:
    """The two-sided two-sample t-test's power with `seeds` per group, from the noncentral t itself."""
    freedom = 2 * seeds - 2
    critical = stats.t.ppf(1 - ALPHA / 2, freedom)
    shift = effect * math.sqrt(seeds / 2)
    return stats.nct.sf(critical, freedom, shift) + stats.nct.cdf(-critical, freedom, shift)


@pytest.mark.parametrize(("effect", "cohen"), [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_needed_is_the_fewest_with_80_percent_power(effect, cohen):
    needed = seeds_needed(effect * 0.003, 0.003)
    assert needed == cohen  # Cohen (1988), table 2.4.1: n per group at power 0.80, two-sided α 0.05
    assert _power(effect, needed) >= POWER > _power(effect, needed - 1)


def test_seeds_needed_at_its_edges():
    assert seeds_needed(0.01, 0.0001) == 2  # a difference a hundred spreads wide: the fewest there can be
    assert seeds_needed(0.0, 0.01) == math.inf and seeds_needed(0.001, 0.01, most=50) == math.inf
    assert seeds_needed(0.01, 0.0) == 2


def test_student_with_one_seed_against_two_by_hand():
    # pooled variance ((2-3)^2 + (4-3)^2) / 1 = 2; standard error sqrt(2 (1 + 1/2)) = sqrt(3); one degree of
    # freedom, where t is Cauchy: p = 1 - (2 / pi) atan(|t|)
    result = student([1.0], [2.0, 4.0])
    t = 2 / math.sqrt(3)
    assert result.difference == -2.0
    assert result.p_value == pytest.approx(1 - 2 / math.pi * math.atan(t))
    assert result.ci_high - result.difference == pytest.approx(math.tan(math.pi * 0.475) * math.sqrt(3))
    several = student([1.0, 2.0, 3.5], [2.0, 4.0, 4.5])
    assert several.p_value == pytest.approx(stats.ttest_ind([1.0, 2.0, 3.5], [2.0, 4.0, 4.5]).pvalue)


VALUES = {"a": {"kernel": 3, "strides": 1, "l2": 0.0}, "b": {"kernel": 5, "strides": 1, "l2": 0.0}}
PROVENANCE = {"precision": "float32", "commit": "c", "code": "c", "evaluate_code": "c", "data": "d",
              "machine": "m", "versions": "v"}


def _record(setting, seed, test_accuracy, train_loss=0.1, right=None, epochs=50, **provenance):
    correct = None if right is None else np.arange(1000) < right
    record = RunRecord(setting=setting, dataset="mnist", seed=seed, run_id=f"{setting}-{seed}", epochs=epochs,
                       subset=1.0, values=dict(VALUES[setting]),
                       metrics={"train_loss": train_loss, "train_accuracy": 0.99, "val_accuracy": 0.98,
                                "test_accuracy": test_accuracy},
                       provenance={**PROVENANCE, **provenance})
    if correct is not None:
        import base64

        record.correct = base64.b64encode(np.packbits(correct).tobytes()).decode()
        record.test_images = len(correct)
    return record


def _judge(direction, records, metric="test_accuracy", margin=None, homework=None):
    claim = Claim(section="1-1", quote="q", says="s", reference="a", margin=margin,
                  checks=[Check(setting="b", metric=metric, direction=direction)])
    homework = homework or {"settings": VALUES, "results": {}}
    return judge("c", claim, claim.checks[0], grouped(records), VALUES, homework)


def test_welch_decides_a_directional_claim_either_way():
    lower = [_record("a", s, 0.990 + 0.001 * s) for s in range(3)] + [_record("b", s, 0.980 + 0.001 * s)
                                                                     for s in range(3)]
    assert _judge("lower", lower).verdict == "confirmed" and _judge("higher", lower).verdict == "contradicted"
    row = _judge("lower", lower)
    assert row.test == "Welch, 3 vs 3 seeds" and row.needed == "decided" and row.seeds == (3, 3)
    close = [_record("a", 0, 0.990), _record("a", 1, 0.980), _record("b", 0, 0.985), _record("b", 1, 0.983)]
    assert _judge("lower", close).verdict == "within noise"


def test_a_no_difference_claim_is_judged_by_its_interval_against_the_margin():
    alike = [_record("a", s, 0.990 + 0.0002 * s) for s in range(3)] + [_record("b", s, 0.9901 + 0.0002 * s)
                                                                      for s in range(3)]
    assert _judge("same", alike, margin=0.005).verdict == "confirmed"
    apart = [_record("a", s, 0.990 + 0.0002 * s) for s in range(3)] + [_record("b", s, 0.970 + 0.0002 * s)
                                                                      for s in range(3)]
    assert _judge("same", apart, margin=0.005).verdict == "contradicted"
    loose = [_record("a", 0, 0.990), _record("a", 1, 0.970), _record("b", 0, 0.985), _record("b", 1, 0.975)]
    assert _judge("same", loose, margin=0.005).verdict == "within noise"


def test_one_seed_each_is_judged_by_mcnemar_and_every_shared_seed_gets_its_p():
    pair = [_record("a", 0, 0.9, right=900), _record("b", 0, 0.8, right=800)]
    row = _judge("lower", pair)
    assert row.test == "McNemar, seed 0" and row.verdict == "confirmed" and row.mcnemar[0][0] == 0
    assert row.mcnemar[0][1] == pytest.approx(stats.binomtest(0, 100).pvalue)
    without = _judge("lower", [_record("a", 0, 0.9), _record("b", 0, 0.8)])
    assert (without.verdict, without.test) == ("within noise", "none: one seed each, no predictions kept")
    seeds = [_record("a", s, 0.9, right=900) for s in (0, 1)] + [_record("b", s, 0.89, right=890) for s in (0, 1)]
    assert [seed for seed, _ in _judge("lower", seeds).mcnemar] == [0, 1]


def test_a_claim_whose_settings_are_missing_or_trained_otherwise_is_not_run():
    assert _judge("lower", [_record("a", 0, 0.9)]).notes == ("no results for b",)
    otherwise = _record("b", 0, 0.9)
    otherwise.values["strides"] = 2
    row = _judge("lower", [_record("a", 0, 0.9), otherwise])
    assert (row.verdict, row.notes) == ("not run", ("b trains with strides 2",))
    lacking = _record("b", 0, 0.9)
    del lacking.metrics["train_loss"]
    assert _judge("higher", [_record("a", 0, 0.9), lacking], metric="train_loss").notes == (
        "train_loss not kept for b",)


def test_seeds_needed_from_the_homeworks_difference_and_the_spread_measured_or_assumed():
    homework = {"settings": VALUES, "results": {"mnist": {
        "kernel": {"a": [0.1, 0.99, 0.98, 0.990], "b": [0.1, 0.99, 0.98, 0.985]},
        "strides": {"a": [0.1, 0.99, 0.98, 0.986]}}}}  # `a` trained twice: 0.4 pp apart
    claim = Claim(section="1-1", quote="q", says="s", reference="a", table="kernel",
                  checks=[Check(setting="b", metric="test_accuracy", direction="lower")])
    records = [_record("a", 0, 0.990), _record("a", 1, 0.984), _record("b", 0, 0.987), _record("b", 1, 0.985)]
    row = judge("c", claim, claim.checks[0], grouped(records), VALUES, homework)
    spread = math.sqrt((np.std([0.990, 0.984], ddof=1) ** 2 + np.std([0.987, 0.985], ddof=1) ** 2) / 2)
    assert row.verdict == "within noise" and row.homework == pytest.approx(-0.005)
    assert row.needed == str(seeds_needed(0.005, spread)) and row.spread_note == ""
    one_each = [_record("a", 0, 0.990), _record("b", 0, 0.987)]
    row = judge("c", claim, claim.checks[0], grouped(one_each), VALUES, homework)
    assert row.spread_note == "assumed: the homework's two runs of a"
    assert row.needed == str(seeds_needed(0.005, 0.004 / math.sqrt(2)))


def test_a_smoke_run_and_what_else_differs_are_said_beside_the_verdict():
    records = [_record("a", s, 0.99 + 0.001 * s, epochs=2) for s in range(2)] + [
        _record("b", 0, 0.98, epochs=2, precision="mixed_bfloat16", machine="other"), _record("b", 1, 0.981, epochs=2)]
    assert _judge("lower", records).notes == ("smoke run: not yet meaningful", "bf16 vs float32", "2 machine kinds")


def test_records_survive_the_file_and_a_run_kept_twice_counts_once(tmp_path):
    records = [_record("a", 0, 0.9, right=900), _record("b", 0, 0.8)]
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    first.write_text(dump(records))
    second.write_text(dump(records[:1]))
    read = read_records([first, second])
    assert len(read) == 2 and read[0].metrics == records[0].metrics
    assert np.array_equal(read[0].correctness(), np.arange(1000) < 900) and read[1].correctness() is None


def test_the_reports_results_become_records_that_read_back(tmp_path):
    from pipeline.params.schema import Setting
    from pipeline.reporting.records import records_of
    from pipeline.reporting.results import Architecture, Result, SeedResult

    train = {"train_loss": 0.2, "train_accuracy": 0.9, "val_accuracy": 0.8, "epochs": 2, "precision": "float32"}
    runs = [SeedResult(seed, train, {"test_accuracy": 0.7}, {"epoch": np.array([1.0])}, np.arange(100) < 70,
                       f"run-{seed}", {"machine": "m", "code": "c", "git_commit": "c"}) for seed in (0, 1)]
    values = {"dataset": "cifar10", "kernel": 3, "strides": 1, "l2": 0.0, "color": "gray", "dropout": (0.2, 0.3, 0.4)}
    result = Result("cifar10-k3-s1", Setting(dataset="cifar10", kernel=3, strides=1, l2=0.0), runs, [], 2, 0.2,
                    "md5", Architecture([], 0, 0), [], values)
    path = tmp_path / "runs.json"
    path.write_text(dump(records_of(result)))
    [first, second] = read_records([path])
    assert first.values["kernel"] == 3 and first.values["dropout"] == [0.2, 0.3, 0.4] and first.smoke
    assert first.metrics == {"train_loss": 0.2, "train_accuracy": 0.9, "val_accuracy": 0.8, "test_accuracy": 0.7}
    assert first.made_by.machine == "m" and first.made_by.precision == "float32" and second.seed == 1
    assert np.array_equal(second.correctness(), np.arange(100) < 70)


def test_a_broken_records_file_is_one_line_naming_it(tmp_path):
    from pipeline.common.errors import PipelineError

    path = tmp_path / "runs.json"
    path.write_text('[{"setting": "a"}]')
    with pytest.raises(PipelineError, match=r"runs\.json: the kept runs: 0\.dataset: .*copy it again"):
        read_records([path])


@pytest.mark.parametrize(("edit", "said"), [
    (("mnist-kernel:", "mnist-kernell:", 0), None),  # a new claim's name is the user's: no error
    (("reference: mnist-k3-s1\n    table: kernel", "reference: mnist-k3-s9\n    table: kernel", 1),
     "claims.mnist-kernel.reference: no setting 'mnist-k3-s9'"),
    (("metric: train_loss, direction: higher}", "metric: train_los, direction: higher}", 1),
     "claims.mnist-kernel.checks.0.metric: Input should be"),
    (("table: kernel", "table: kernels", 1), "claims.mnist-kernel.table: no homework table 'kernels'"),
    (("    margin: 0.005          # \"barely\": within half a point\n", "", 1),
     "claims.mnist-kernel: Value error, a check of direction `same` needs the claim's `margin`"),
    (("    says: a larger kernel", "    sayz: a larger kernel", 1),
     "claims.mnist-kernel.sayz: unknown key (did you mean says?)"),
])
def test_a_wrong_claims_file_is_one_line_naming_the_key(tmp_path, edit, said):
    old, new, count = edit
    text = (REPO / "reports" / "claims.yaml").read_text()
    path = tmp_path / "claims.yaml"
    path.write_text(text.replace(old, new, count or 1))
    if said is None:
        read_claims(path, HOMEWORK)
        return
    with pytest.raises(ParamsError) as raised:
        read_claims(path, HOMEWORK)
    assert str(raised.value).startswith(f"{path}: {said}") and "\n" not in str(raised.value)


def test_the_claims_file_names_every_check_once():
    keys = [(name, check.setting, check.metric) for name, claim in CLAIMS.claims.items() for check in claim.checks]
    assert len(keys) == len(set(keys)) and isinstance(CLAIMS, Claims)
    assert all(Path(REPO / "reports" / "claims.yaml").read_text().count(f"  {name}:") == 1 for name in CLAIMS.claims)
