"""`make quick` / `make full` (params size) and the training-time estimate, without training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipeline.params.file import with_values
from pipeline.params.load import load_params, parse_params
from pipeline.params.schema import SIZES
from pipeline.params.size import set_size
from pipeline.training.estimate import summary
from pipeline.training.progress import OTHER_STAGE_SECONDS, TENSORFLOW_STAGE_SECONDS
from pipeline.training.timings import EpochTiming, duration, scaled_epoch_seconds
from tests.helpers import shipped_params, shipped_params_text


@pytest.fixture
def params_copy(tmp_path):
    (tmp_path / "params.yaml").write_text(shipped_params_text())
    return tmp_path / "params.yaml"


def _train(path):
    return yaml.safe_load(path.read_text())["train"]


def test_quick_then_full_restores_the_values_quick_replaced_and_keeps_comments(params_copy):
    text = params_copy.read_text().replace("batch_size: 128 ", "batch_size: 64  ")
    params_copy.write_text(text)
    set_size(params_copy, "quick")
    quick = _train(params_copy)
    assert {f"train.{k}": quick[k] for k in ("epochs", "subset", "batch_size")} == SIZES["quick"]
    assert "# full passes over the training split" in params_copy.read_text()
    set_size(params_copy, "quick")  # twice: what it replaced the first time is still what full restores
    set_size(params_copy, "full")
    assert params_copy.read_text() == text
    assert not (params_copy.parent / ".dvc" / "tmp" / "size-before-quick.json").exists()


def test_full_without_a_quick_before_it_is_the_homeworks_size(params_copy):
    set_size(params_copy, "full")
    assert _train(params_copy)["epochs"] == 50 and not load_params(params_copy).train.smoke_run


def test_a_user_edit_made_at_the_quick_size_survives_full(params_copy):
    set_size(params_copy, "quick")
    params_copy.write_text(params_copy.read_text().replace("l2: 0.001", "l2: 0.01"))
    set_size(params_copy, "full")
    assert load_params(params_copy).settings["mnist-k3-s1-l2"].l2 == 0.01


def test_with_values_refuses_a_key_that_does_not_exist():
    with pytest.raises(KeyError, match="train.epoch"):
        with_values(shipped_params_text(), {"train.epoch": 3})


def test_an_epoch_time_scales_with_the_images_it_sees():
    # 1000 training images and 100 validation images took 31 s: 10 s per 1000 image-passes
    timing = EpochTiming("m", 32, train_images=1000, val_images=100, seconds=31.0)
    assert scaled_epoch_seconds(timing, 10_000, 100) == pytest.approx(301.0)


def test_the_stages_to_run_are_the_changed_ones_and_all_downstream_of_them():
    from pipeline.training.progress import stages_to_run

    depends_on = {"download": set(), "preprocess": {"download"}, "job@a": {"preprocess"}, "job@b": {"preprocess"},
                  "train@a-0": {"job@a"}, "train@b-0": {"job@b"}, "evaluate@a-0": {"train@a-0"},
                  "evaluate@b-0": {"train@b-0"}, "report": {"evaluate@a-0", "evaluate@b-0"}}
    assert stages_to_run({"job@a"}, depends_on) == {"job@a", "train@a-0", "evaluate@a-0", "report"}
    assert stages_to_run({"download"}, depends_on) == set(depends_on)
    assert stages_to_run(set(), depends_on) == set()


def test_the_time_left_follows_the_pace_of_the_finished_stages():
    from pipeline.training.progress import progress_line, read_plan, stage_seconds, time_left

    plan = [stage_seconds(stage, {"train@a-0": 100.0}) for stage in ("train@a-0", "evaluate@a-0", "plot@a")]
    assert plan == [100 + TENSORFLOW_STAGE_SECONDS, TENSORFLOW_STAGE_SECONDS, OTHER_STAGE_SECONDS]
    assert time_left(plan, 0, 0.0) == sum(plan)
    # the first stage took twice its plan: the rest will too
    assert time_left(plan, 1, 2 * plan[0]) == pytest.approx(2 * sum(plan[1:]))
    assert time_left(plan, 1, plan[0] / 2) == pytest.approx(sum(plan[1:]) / 2)
    assert progress_line("train@a-0", 1, 3, 0.0, 600.0) == "[stage 1 of 3: train@a-0; about 10 min in all]"
    assert progress_line("plot@a", 3, 3, 125.0, 30.0) == "[stage 3 of 3: plot@a; 2 min so far, about 30 s left]"
    assert read_plan(Path("/nonexistent/estimate.json")) == {}


def test_a_plan_file_is_read_as_written_or_not_at_all(tmp_path):
    from pipeline.training.progress import read_plan

    (tmp_path / "plan.json").write_text('{"train@a-0": 120.5, "junk": "x"}')
    assert read_plan(tmp_path / "plan.json") == {"train@a-0": 120.5}
    (tmp_path / "plan.json").write_text("[1, 2")
    assert read_plan(tmp_path / "plan.json") == {}


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (42, 600, 5400, 86400)] == ["42 s", "10 min", "1.5 h", "24.0 h"]


def test_summary_names_settings_epochs_and_size():
    params = parse_params(shipped_params(), "params.yaml")
    total, line = summary(params, [("mnist-k3-s1", 3600.0, ""), ("mnist-k5-s1", 1800.0, "")])
    # each run's train and evaluate stages, each setting's plot, then the report and register once
    assert total == 5400 + 2 * (2 * TENSORFLOW_STAGE_SECONDS + OTHER_STAGE_SECONDS) + TENSORFLOW_STAGE_SECONDS + \
        OTHER_STAGE_SECONDS
    assert line == "dvc repro will train 2 settings x 50 epochs: about 1.5 h on this machine"


def test_the_summary_names_the_epochs_and_share_settings_set_themselves(tmp_path):
    values = shipped_params()
    values["settings"]["mnist-k5-s1"].update(epochs=4, subset=0.2)
    values["sweeps"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    params = load_params(tmp_path / "params.yaml")
    _, line = summary(params, [("mnist-k3-s1", 60.0, ""), ("mnist-k5-s1", 60.0, "")])
    assert line.startswith("dvc repro will train 2 settings x 4-50 epochs on 20-100 % of the images: ")


def test_the_estimate_uses_a_settings_own_values_and_a_timing_only_where_it_applies(tmp_path):
    from pipeline.training.estimate import estimate
    from pipeline.training.timings import machine_kind, record_timing

    values = shipped_params()
    values["settings"]["mnist-k5-s1"].update(epochs=4, batch_size=64)
    values["sweeps"] = {}  # the homework's sweeps would refuse a setting with its own epochs
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    params = load_params(tmp_path / "params.yaml")
    # 54000 + 6000 images at 64 per step, 10 s per epoch; the setting trains 4 epochs
    record_timing(tmp_path, "mnist-k5-s1", EpochTiming(machine_kind(), 64, 54000, 6000, 10.0, params.train.precision))
    [(name, seconds, source)] = estimate(params, tmp_path, [("mnist-k5-s1", 0)])
    assert (name, seconds) == ("mnist-k5-s1", 40.0) and "its last training here" in source

    timing = EpochTiming(machine_kind(), 64, 54000, 6000, 10.0, "float32")
    other = dataclasses.replace(params.train, batch_size=64, precision="mixed_bfloat16")
    assert timing.applies_to(machine_kind(), dataclasses.replace(other, precision="float32"))
    assert not timing.applies_to(machine_kind(), other)  # measured in another precision
    assert not timing.applies_to("elsewhere", dataclasses.replace(other, precision="float32"))
    assert not dataclasses.replace(timing, precision="").applies_to(machine_kind(), params.train)  # an old record
