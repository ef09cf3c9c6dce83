"""What a training run logs besides metrics (pipeline/tracking/artifacts.py), with MLflow stood in
for: a model an earlier attempt of the same run left is deleted before the new one is logged."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipeline.tracking.artifacts import log_model


class FakeMlflow:
    """The calls log_model makes, in order; an earlier attempt of run 'r1' left model 'm-old'."""

    def __init__(self, earlier):
        self.events, self.earlier = [], earlier
        self.tensorflow = SimpleNamespace(log_model=lambda model, **kwargs: self.events.append(("log", kwargs["name"])))

    def search_logged_models(self, experiment_ids, output_format, filter_string):
        self.events.append(("search", tuple(experiment_ids), filter_string))
        return [SimpleNamespace(model_id=model_id) for model_id in self.earlier]

    def MlflowClient(self):  # noqa: N802 (mlflow's name)
        return SimpleNamespace(delete_logged_model=lambda model_id: self.events.append(("delete", model_id)))


def _model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    return model


def test_an_earlier_attempts_model_is_deleted_before_the_new_one_is_logged():
    mlflow = FakeMlflow(["m-old"])
    log_model(mlflow, _model(), "s-seed0", np.zeros((5, 3), np.float32), "r1", "7")
    assert mlflow.events == [("search", ("7",), "source_run_id = 'r1'"), ("delete", "m-old"), ("log", "s-seed0")]


def test_a_first_attempt_deletes_nothing():
    mlflow = FakeMlflow([])
    log_model(mlflow, _model(), "s-seed0", np.zeros((5, 3), np.float32), "r1", "7")
    assert [event[0] for event in mlflow.events] == ["search", "log"]
