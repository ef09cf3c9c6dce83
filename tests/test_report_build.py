"""Building the report from made-up results: tables, labels, banners and figures, no files."""

from __future__ import annotations

import numpy as np

from pipeline.config import Setting
from pipeline.report_build import Architecture, Result, build_report, sweep_table

HOMEWORK = {"source": "the homework", "results": {"mnist": {"kernel": {"k3": [0.0123, 0.999, 0.9895, 0.9858]}}}}
ARCHITECTURE = Architecture([("conv2d_1", "Conv2D", (None, 28, 28, 32), 320)], trainable=320, frozen=0)


def _result(name, kernel, test_accuracy, l2=0.0, sweeps=("kernel",)):
    setting = Setting(dataset="mnist", kernel=kernel, strides=1, l2=l2, sweeps=sweeps)
    train = {"train_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.75, "epochs": 2}
    test = {"test_accuracy": test_accuracy, "most_confused": [{"classes": ["4", "9"], "count": 7}]}
    history = {"epoch": np.array([1.0, 2.0]), "val_accuracy": np.array([0.7, 0.75])}
    kernels = [("conv2d_1", np.full((3, 3, 1, 32), 0.1 * kernel))]
    return Result(name, setting, train, test, history, f"run-{name}", "md5", ARCHITECTURE, kernels)


def test_sweep_table_puts_the_homeworks_numbers_beside_ours():
    homework = HOMEWORK["results"]["mnist"]["kernel"]
    header, _, k3, k5 = sweep_table("kernel", [_result("k3", 3, 0.9), _result("k5", 5, 0.8)], homework).splitlines()
    assert header.startswith("| Kernel size | Train loss |") and "HW2 test acc" in header
    assert k3 == "| (3,3) | 0.5000 | 0.8000 | 0.7500 | 0.9000 | 0.0123 | 0.9990 | 0.9895 | 0.9858 | `k3` |"
    assert k5.endswith("| 0.8000 | – | – | – | – | `k5` |")


def test_report_has_a_section_per_sweep_and_names_the_best():
    results = {"k3": _result("k3", 3, 0.9), "k5": _result("k5", 5, 0.95),
               "k3-l2": _result("k3-l2", 3, 0.85, l2=0.001, sweeps=("l2",))}
    report = build_report(results, epochs=2, subset=0.1, homework=HOMEWORK)
    text = report.markdown
    assert "## 1. MNIST" in text and "## 2. CIFAR" not in text
    assert "### Effect of the kernel size (strides 1)" in text and "### Effect of L2" in text
    assert "Best test accuracy in this sweep: **95.00%** (Kernel size: (5,5); guessing scores 10%)." in text
    assert "Settings in no sweep" not in text
    assert "> **Smoke run: 2 epochs on 10% of the training split" in text
    assert sorted(report.figures) == ["mnist-kernel-test", "mnist-kernel-val", "mnist-l2-test", "mnist-l2-val",
                                      "mnist-l2-weights"]
    assert "| `k5` | `run-k5` | `md5` | 2 |" in text
    assert "| conv2d_1 (Conv2D) | (None, 28, 28, 32) | 320 |" in text


def test_a_setting_in_no_sweep_gets_a_table_of_its_own():
    results = {"k3": _result("k3", 3, 0.9), "k9": _result("k9", 9, 0.7, sweeps=())}
    text = build_report(results, epochs=2, subset=1.0, homework=HOMEWORK).markdown
    assert "### Settings in no sweep" in text
    assert "| `k9` | 9 | 1 | 0 | 0.5000 | 0.8000 | 0.7500 | 0.7000 |" in text


def test_a_full_length_run_is_no_smoke_run():
    report = build_report({"k3": _result("k3", 3, 0.9)}, epochs=50, subset=1.0, homework=HOMEWORK)
    assert "Smoke run" not in report.markdown
