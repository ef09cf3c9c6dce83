"""params.yaml validation: every bad input stops a stage with one line naming file, key, problem."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.params.file import ParamsError
from pipeline.params.load import load_params, parse_params
from tests.helpers import REPO, SHIPPED_PARAMS, project_env, shipped_checkout, shipped_params, shipped_params_text

SHIPPED = shipped_params()


def _set(path: str, value):
    def mutate(raw):
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = value
    return mutate


def _drop(path: str):
    def mutate(raw):
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]
    return mutate


def _rename(path: str, new_name: str):
    def mutate(raw):
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[new_name] = node.pop(last)
    return mutate


# (mutation, key path the message must name, words the message must contain)
BAD_VALUES = [
    (_set("train.epochs", 0), "train.epochs", "greater than 0"),
    (_set("train.epochs", -3), "train.epochs", "greater than 0"),
    (_set("train.epochs", "3"), "train.epochs", "valid integer"),
    (_set("train.batch_size", 0), "train.batch_size", "greater than 0"),
    (_set("train.learning_rate", "fast"), "train.learning_rate", "valid number"),
    (_set("train.deterministic", 1), "train.deterministic", "valid boolean"),
    (_set("train.momentum", 0.9), "train.momentum", "unknown key"),
    (_rename("settings.mnist-k3-s1.kernel", "kernal"), "settings.mnist-k3-s1.kernal",
     "unknown key (did you mean kernel?)"),
    (_rename("plot.examples", "exampels"), "plot.exampels", "unknown key (did you mean examples?)"),
    (_set("sweeps.mnist-kernel.settings", "mnist-k3-s1"), "sweeps.mnist-kernel.settings",
     "expected a list in brackets, e.g. [mnist-k3-s1] (got 'mnist-k3-s1')"),
    (_set("settings.mnist-k3-s1.dataset", "MNIST"), "settings.mnist-k3-s1.dataset",
     "'mnist' or 'cifar10' (got 'MNIST')"),
    (_set("extra_section", {}), "extra_section", "unknown"),
    (_drop("train"), "train", "missing"),
    (_drop("train.epochs"), "train.epochs", "missing"),
    (_drop("seeds"), "seeds", "missing key"),
    (_set("seeds", []), "seeds", "no seeds: list at least one, e.g. [0]"),
    (_set("seeds", [0, 1, 0]), "seeds", "lists seed 0 twice"),
    (_set("seeds", [0, -1]), "seeds.1", "greater than or equal to 0 (got -1)"),
    (_set("seeds", [0, 1.5]), "seeds.1", "valid integer (got 1.5)"),
    (_set("seeds", 3), "seeds", "expected a list in brackets, e.g. [3] (got 3)"),
    (_set("preprocess.val_fraction", 0.0), "preprocess.val_fraction", "greater than 0"),
    (_set("preprocess.val_fraction", 1.0), "preprocess.val_fraction", "less than 1"),
    (_set("preprocess.val_fraction", -0.1), "preprocess.val_fraction", "greater than 0"),
    (_set("preprocess.normalization", "minmax"), "preprocess.normalization", "'zscore' or 'per_image'"),
    (_set("models.cifar10.dropout", [0.2, 0.3, 1.0]), "models.cifar10.dropout.2", "less than 1"),
    (_set("models.cifar10.dropout", [0.2, 0.3]), "models.cifar10.dropout", "too few values"),
    (_set("settings.mnist-k3-s1.kernel", 0), "settings.mnist-k3-s1.kernel", "greater than 0"),
    (_set("settings.mnist-k3-s1.dataset", "svhn"), "settings.mnist-k3-s1.dataset", "'mnist' or 'cifar10'"),
    (_set("settings.mnist-k3-s1.l2", -0.01), "settings.mnist-k3-s1.l2", "greater than or equal to 0"),
    (_set("settings.mnist-k3-s1.colour", "red"), "settings.mnist-k3-s1.colour", "unknown key"),
    (_set("settings.mnist-k5-s3.strides", 40), "settings.mnist-k5-s3",
     "shrinks the feature map to nothing at layer max_pooling2d_1"),
    (_set("settings.cifar10-k5-s2.strides", 3), "settings.cifar10-k5-s2", "at layer max_pooling2d_3"),
    (_set("sweeps.mnist-kernel.vary", "colour"), "sweeps.mnist-kernel.vary", "'colour' is no key a setting can vary"),
    (_set("sweeps.mnist-kernel.vary", "dataset"), "sweeps.mnist-kernel.vary", "'dataset' is no key a setting can vary"),
    (_set("settings.mnist-k5-s2.l2", 0.1), "sweeps.mnist-strides",
     "mnist-k5-s2 differs from mnist-k5-s1 in l2 (0.0 vs 0.1), but the sweep may vary only strides"),
    (_set("settings.mnist-k7-s1.learning_rate", 0.01), "sweeps.mnist-kernel",
     "mnist-k7-s1 differs from mnist-k3-s1 in learning_rate (0.001 vs 0.01), but the sweep may vary only kernel"),
    (_set("sweeps.mnist-kernel.settings", ["mnist-k3-s1", "mnist-k9-s1"]), "sweeps.mnist-kernel.settings",
     "no setting 'mnist-k9-s1' (known: mnist-k3-s1,"),
    (_set("sweeps.mnist-kernel.settings", ["mnist-k3-s1", "mnist-k3-s1"]), "sweeps.mnist-kernel.settings",
     "lists a setting twice"),
    (_set("sweeps.mnist-kernel.by", "kernel"), "sweeps.mnist-kernel.by", "unknown key"),
    (_set("settings.mnist-k3-s1.seed", 3), "settings.mnist-k3-s1.seed", "unknown key"),
    (_set("settings.mnist-k3-s1.momentum", 0.9), "settings.mnist-k3-s1.momentum", "unknown key"),
    (_set("settings.mnist-k3-s1.optimizer", "nadam"), "settings.mnist-k3-s1.optimizer",
     "'adam', 'sgd', 'rmsprop' or 'adamw' (got 'nadam')"),
    (_set("train.optimizer", "nadam"), "train.optimizer", "'adam', 'sgd', 'rmsprop' or 'adamw'"),
    (_set("settings.mnist-k3-s1.learning_rate", 0), "settings.mnist-k3-s1.learning_rate", "greater than 0"),
    (_set("settings.mnist-k3-s1.color", "rgb"), "settings.mnist-k3-s1.color", "only CIFAR-10 has colors"),
    (_set("settings.cifar10-k3-s1.color", "cmyk"), "settings.cifar10-k3-s1.color", "'gray' or 'rgb'"),
    (_set("settings.mnist-k3-s1.dropout", [0.1, 0.1, 0.1]), "settings.mnist-k3-s1.dropout",
     "is an option of the cifar10 model (models.cifar10), not of mnist's"),
    (_set("settings.bad/name", SHIPPED["settings"]["mnist-k7-s1"]), "settings.bad/name", "may hold only"),
    (_set("settings", {}), "settings", "no settings"),
    (_set("settings", None), "settings", "valid dictionary"),
    (_set("models.mnist.filters", 64), "models.mnist.filters", "unknown key"),
    (_set("plot.feature_map_images.svhn", "auto"), "plot.feature_map_images.svhn", "unknown key"),
    (_set("plot.feature_map_images.mnist", [3]), "plot.feature_map_images.mnist", "auto"),
    (_set("train.subset", 0.0), "train.subset", "greater than 0"),
    (_set("train.precision", "float16"), "train.precision", "'mixed_float16'"),
    (_set("train.distribute", "multi_worker"), "train.distribute", "'none' or 'mirrored'"),
]


@pytest.mark.parametrize("mutate,key,problem", BAD_VALUES, ids=[case[1] + ":" + case[2] for case in BAD_VALUES])
def test_bad_value_names_key_and_problem(mutate, key, problem):
    raw = copy.deepcopy(SHIPPED)
    mutate(raw)
    with pytest.raises(ParamsError) as caught:
        parse_params(raw, "params.yaml")
    message = str(caught.value)
    assert message.startswith(f"params.yaml: {key}: "), message
    assert problem in message
    assert "\n" not in message


BAD_FILES = [
    ("train:\n  epochs: 3\n  epochs: 4\n", "line 3: invalid YAML (duplicate key 'epochs')"),
    ("settings:\n  a:\n    kernel: 3\n  a:\n    kernel: 5\n", "line 4: invalid YAML (duplicate key 'a')"),
    ("train: [\n", "invalid YAML"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("", "expected a mapping of sections"),
]


@pytest.mark.parametrize("text,problem", BAD_FILES)
def test_malformed_file(tmp_path, text, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_params(path)


def test_the_tests_copy_of_params_yaml_is_the_shipped_file():
    """The tests assert on tests/shipped_params.yaml, not on the workspace's params.yaml, which is
    the user's to edit, resize and commit. On a fresh clone the two must be equal."""
    if (REPO / "params.yaml").read_text(encoding="utf-8") == SHIPPED_PARAMS.read_text(encoding="utf-8"):
        return
    message = ("params.yaml differs from tests/shipped_params.yaml: a change to the shipped params.yaml "
               "goes into both (on a fresh clone, as CI runs; here params.yaml is taken for the user's)")
    pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def test_shipped_params_are_valid_and_read_floats_in_e_notation(tmp_path):
    params = parse_params(shipped_params(), "params.yaml")
    assert len(params.settings) == 12 and len(params.sweeps) == 7  # the homework's 11 and 6, plus color
    text = shipped_params_text().replace("learning_rate: 0.001", "learning_rate: 1e-3")
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").train.learning_rate == 0.001


def test_stage_prints_one_line_without_traceback(tmp_path):
    raw = copy.deepcopy(SHIPPED)
    raw["train"]["epochs"] = 0
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.preprocess", "mnist", "raw.npz", "out", "summary.json", "--params", str(bad)],
        cwd=REPO, env=project_env(), capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {bad}: train.epochs: Input should be greater than 0 (got 0)\n"


def test_the_job_stage_checks_every_setting_before_writing_its_job(tmp_path):
    """The job stage, the first to read a setting, stops on a bad other one with the one line;
    nothing is written (its data directory is never reached)."""
    raw = copy.deepcopy(SHIPPED)
    raw["settings"]["mnist-k3-s1"]["strides"] = 40
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pipeline.job", "cifar10-k3-s1", str(tmp_path / "nodata"),
                             str(out / "job.json"), "--params", str(bad)], cwd=REPO, env=project_env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (f"error: {bad}: settings.mnist-k3-s1: kernel 3 with strides 40 shrinks the "
                             "feature map to nothing at layer max_pooling2d_1\n")
    assert not out.exists()


def _cli_cases():
    for mutate, key, problem in BAD_VALUES:
        raw = copy.deepcopy(SHIPPED)
        mutate(raw)
        yield pytest.param(yaml.safe_dump(raw, sort_keys=False), f"{key}: ", problem, id=f"{key}:{problem}")
    for text, problem in BAD_FILES:
        yield pytest.param(text, "", problem, id=f"file:{problem}")


@pytest.mark.parametrize("text,key,problem", list(_cli_cases()))
def test_command_line_exits_with_one_line(tmp_path, text, key, problem):
    """What the user sees: exit 1 and one line on stderr naming file, key path and problem."""
    bad = tmp_path / "params.yaml"
    bad.write_text(text)
    result = subprocess.run([sys.executable, "-m", "pipeline.params", "check", "--params", str(bad)],
                            cwd=REPO, env=project_env(), capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}: {key}") and result.stderr.count("\n") == 1, result.stderr
    assert problem in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stage,paths", [("job", 2), ("plot", 8)])
def test_unknown_setting_is_one_line_naming_the_known_ones(stage, paths):
    """Every stage that takes a setting, asked for one that params.yaml lacks (the paths after it
    are never reached)."""
    command = [sys.executable, "-m", f"pipeline.{stage}", "nosuch", *["unused"] * paths]
    result = subprocess.run(command, cwd=shipped_checkout(), env=project_env(), capture_output=True, text=True)
    known = ", ".join(SHIPPED["settings"])
    assert result.returncode == 1
    assert result.stderr == f"error: params.yaml: settings.nosuch: no such setting (known: {known})\n"


@pytest.mark.parametrize("stage,paths", [("train", 4), ("evaluate", 6)])
def test_a_missing_job_file_is_one_line(stage, paths):
    """The stages that run a (setting, seed) read its job file, not params.yaml."""
    command = [sys.executable, "-m", f"pipeline.{stage}", "jobs/nosuch.json", *["0"] * (stage == "train"),
               *["unused"] * paths]
    result = subprocess.run(command, cwd=REPO, env=project_env(), capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == ("error: jobs/nosuch.json: cannot read the job file (No such file or directory); "
                             "the job stage writes it: dvc repro job@<setting>\n")


def test_size_words_name_the_size_a_training_will_run_at():
    """The search's last line says it: after `make quick`, `make repro` trains at the quick size."""
    from dataclasses import replace

    from pipeline.params.schema import SIZES
    from pipeline.params.size import size_words

    train = parse_params(shipped_params()).train
    quick = replace(train, epochs=SIZES["quick"]["train.epochs"], subset=SIZES["quick"]["train.subset"])
    assert size_words(train) == "at full size (50 epochs on every training image)"
    assert size_words(quick) == ("at the quick size (2 epoch(s) on 20% of the training images; "
                                 "`make full` first for the homework's)")
    assert size_words(replace(train, epochs=10)) == ("at 10 epoch(s) on 100% of the training images, a smoke run "
                                                     "(`make full` for the homework's size)")
