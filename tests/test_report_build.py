"""Building the report from made-up results: tables, verdicts, banners and figures, no files."""

from __future__ import annotations

import numpy as np

from pipeline.params.schema import Setting, Sweep
from pipeline.reporting.build import build_report
from pipeline.reporting.results import Architecture, Result, SeedResult, aggregates
from pipeline.reporting.stats import mcnemar, welch
from pipeline.reporting.tables import sweep_table

HOMEWORK = {"source": "the homework", "settings": {"k3": {"kernel": 3, "strides": 1, "l2": 0.0}},
            "results": {"mnist": {"kernel": {"k3": [0.0123, 0.999, 0.9895, 0.9858]}}}}
ARCHITECTURE = Architecture([("conv2d_1", "Conv2D", (None, 28, 28, 32), 320)], trainable=320, frozen=0)
TEST_IMAGES = 1000


def _seed(seed, test_accuracy, right=None):
    """A seed's run; `right`: how many of TEST_IMAGES it gets right, first ones first."""
    right = round(test_accuracy * TEST_IMAGES) if right is None else right
    train = {"train_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.75, "epochs": 2, "precision": "mixed_bfloat16"}
    test = {"test_accuracy": test_accuracy, "most_confused": [{"classes": ["4", "9"], "count": 7}]}
    history = {"epoch": np.array([1.0, 2.0]), "val_accuracy": np.array([0.7, 0.75]) + 0.01 * seed}
    return SeedResult(seed, train, test, history, np.arange(TEST_IMAGES) < right, f"run-{seed}")


def _result(name, kernel, accuracies, l2=0.0, missing=(), epochs=50, subset=1.0, learning_rate=0.001):
    setting = Setting(dataset="mnist", kernel=kernel, strides=1, l2=l2)
    runs = [_seed(seed, accuracy) for seed, accuracy in enumerate(accuracies)]
    kernels = [("conv2d_1", np.full((3, 3, 1, 32), 0.1 * kernel))]
    values = {"dataset": "mnist", "kernel": kernel, "strides": 1, "l2": l2, "learning_rate": learning_rate}
    return Result(name, setting, runs, list(missing), epochs, subset, "md5", ARCHITECTURE, kernels, values)


def _sweeps(**members):
    """{name: Sweep} from name=(vary, settings...)."""
    return {name: Sweep(vary=vary, settings=tuple(settings)) for name, (vary, *settings) in members.items()}


def test_one_seed_each_compares_by_mcnemar_beside_the_homeworks_numbers():
    k3, k5 = _result("k3", 3, [0.9]), _result("k5", 5, [0.8])
    header, _, row3, row5 = sweep_table("kernel", [k3, k5], HOMEWORK["results"]["mnist"]["kernel"]).splitlines()
    assert header.startswith("| Kernel size | Train loss |") and "HW2 test acc | Δ test acc vs (3,3)" in header
    assert row3 == ("| (3,3) | 0.5000 | 0.8000 | 0.7500 | 0.9000 | 0.0123 | 0.9990 | 0.9895 | 0.9858 | – "
                    "| reference | `k3` |")
    expected = mcnemar(np.arange(TEST_IMAGES) < 800, np.arange(TEST_IMAGES) < 900)  # 100 images only k3 gets
    assert expected.verdict == "worse"
    assert row5.endswith(f"| 0.8000 | – | – | – | – | {expected.difference * 100:+.2f} pp "
                         f"[{expected.ci_low * 100:+.2f}, {expected.ci_high * 100:+.2f}] | worse | `k5` |")


def test_several_seeds_give_mean_std_and_welch():
    k3, k5 = _result("k3", 3, [0.980, 0.982, 0.984]), _result("k5", 5, [0.981, 0.983, 0.985])
    _, _, row3, row5 = sweep_table("kernel", [k3, k5], {}).splitlines()
    assert "| 0.9820 ± 0.0020 (3) |" in row3
    expected = welch([0.981, 0.983, 0.985], [0.980, 0.982, 0.984])
    assert expected.verdict == "within noise" and row5.endswith("| within noise | `k5` |")
    assert f"{expected.difference * 100:+.2f} pp" in row5


def test_a_setting_with_missing_seeds_gets_no_verdict_and_the_report_says_so():
    results = {"k3": _result("k3", 3, [0.9, 0.91]), "k5": _result("k5", 5, [0.8], missing=[1])}
    text = build_report(results, _sweeps(kernels=("kernel", "k3", "k5")), HOMEWORK).markdown
    assert "| seeds missing | `k5` (seeds 1 missing) |" in text
    assert "> **Incomplete: no results yet for `k5` (seeds 1).**" in text


def test_report_has_a_section_per_sweep_names_the_best_and_the_test_used():
    results = {"k3": _result("k3", 3, [0.9], epochs=2, subset=0.1), "k5": _result("k5", 5, [0.95]),
               "k3-l2": _result("k3-l2", 3, [0.85], l2=0.001)}
    report = build_report(results, _sweeps(kernels=("kernel", "k3", "k5"), l2=("l2", "k3", "k3-l2")), HOMEWORK)
    text = report.markdown
    assert "## 1. MNIST" in text and "## 2. CIFAR" not in text
    assert "### Effect of the kernel size (strides 1)" in text and "### Effect of L2" in text
    assert "Best test accuracy in this sweep: **95.00%** (Kernel size: (5,5); guessing scores 10%)." in text
    assert "Verdicts: McNemar's exact test" in text and "another seed may change the verdict" in text
    assert report.smoke and "> **Smoke run: 2 epochs on 10% of the training split" in text
    assert sorted(report.figures) == ["kernels-test", "kernels-val", "l2-test", "l2-val", "l2-weights"]
    assert "| `k5` | 0 | `run-0` | `md5` | 2 | mixed_bfloat16 | not recorded | not recorded | not recorded |" in text
    assert 'Runs trained before the pipeline tagged what made them show "not recorded".' in text
    assert "| conv2d_1 (Conv2D) | (None, 28, 28, 32) | 320 |" in text
    assert "Settings in no sweep" not in text


def test_a_setting_in_no_sweep_gets_a_table_of_its_own():
    results = {"k3": _result("k3", 3, [0.9]), "k9": _result("k9", 9, [0.7])}
    text = build_report(results, _sweeps(kernels=("kernel", "k3")), HOMEWORK).markdown
    assert "### Settings in no sweep" in text
    assert "| `k9` | 9 | 1 | 0 | 0.5000 | 0.8000 | 0.7500 | 0.7000 |" in text


def test_a_full_length_run_is_no_smoke_run():
    report = build_report({"k3": _result("k3", 3, [0.9], epochs=50, subset=1.0)}, {}, HOMEWORK)
    assert not report.smoke and "Smoke run" not in report.markdown


def test_any_key_can_be_swept_and_is_labelled_by_its_value():
    results = {"lr1": _result("lr1", 3, [0.9]), "lr3": _result("lr3", 3, [0.92], learning_rate=0.003)}
    text = build_report(results, _sweeps(rates=("learning_rate", "lr1", "lr3")), HOMEWORK).markdown
    assert "### Effect of the learning rate (against `lr1`)" in text
    assert "| Learning rate | Train loss |" in text and "| Δ test acc vs 0.001 [95 % CI] |" in text
    assert "\n| 0.003 | 0.5000 |" in text and "| – | – | – | – |" in text  # the homework has no such sweep
    assert "Best test accuracy in this sweep: **92.00%** (Learning rate: 0.003;" in text


def test_aggregates_per_setting_for_dvc_metrics():
    values = aggregates({"k3": _result("k3", 3, [0.98, 0.99])})["k3"]
    assert values["test_accuracy_mean"] == 0.985 and values["test_accuracy_n"] == 2
    assert values["test_accuracy_std"] == round(float(np.std([0.98, 0.99], ddof=1)), 6)


def test_a_smoke_runs_verdict_says_beside_it_that_it_means_nothing_yet():
    k3, k5 = _result("k3", 3, [0.9], epochs=2, subset=0.2), _result("k5", 5, [0.8], epochs=2, subset=0.2)
    *_, row5 = sweep_table("kernel", [k3, k5], {}).splitlines()
    assert mcnemar(np.arange(TEST_IMAGES) < 800, np.arange(TEST_IMAGES) < 900).verdict == "worse"
    assert row5.endswith("| worse (smoke run: not yet meaningful) | `k5` |")


def test_the_homeworks_numbers_sit_only_beside_a_setting_as_the_homework_trained_it():
    for l2, shown in ((0.0, True), (0.01, False)):
        results = {"k3": _result("k3", 3, [0.9], l2=l2), "k5": _result("k5", 5, [0.8])}
        text = build_report(results, _sweeps(kernels=("kernel", "k3", "k5")), HOMEWORK).markdown
        assert ("| 0.0123 | 0.9990 | 0.9895 | 0.9858 |" in text) == shown, l2
