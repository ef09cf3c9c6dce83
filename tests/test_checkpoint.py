"""Resuming a killed training: every epoch reaches MLflow exactly once, whichever of the epoch's
two saves (our state.json, Keras' backup) the kill fell between. The SIGKILL chaos test
(tests/test_faults_sweep.py) meets these interleavings only by chance; here each is forced."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.training.checkpoint import Resume, epoch_checkpoint


class StepLog:
    """Stands in for mlflow: records the step of each epoch's metrics."""

    def __init__(self):
        self.steps: list[int] = []

    def log_metrics(self, metrics, step, run_id):
        assert run_id == "run" and "val_accuracy" in metrics
        self.steps.append(step)


class KilledAtEpoch(Exception):
    pass


def tiny_fit(callbacks, epochs: int, killed_at: int | None = None) -> None:
    """A 2-image fit with `callbacks`; `killed_at`: the 0-based epoch whose start the process dies at."""
    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == killed_at:
                raise KilledAtEpoch

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    x, y = np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)
    model.fit(x, y, validation_data=(x, y), epochs=epochs, verbose=0, callbacks=[*callbacks, Kill()])


def first_attempt(directory, epochs_done: int) -> Resume:
    """Train `epochs_done` epochs, then die as the next one starts: Keras' backup and our state
    both hold `epochs_done` epochs, all logged."""
    resume, log = Resume(directory, "fp"), StepLog()
    with pytest.raises(KilledAtEpoch):
        tiny_fit([epoch_checkpoint(log, "run", resume)], epochs=epochs_done + 1, killed_at=epochs_done)
    assert log.steps == list(range(1, epochs_done + 1))
    return Resume.load(directory, "fp")


def test_an_epoch_saved_and_logged_is_not_trained_or_logged_again(tmp_path):
    saved = first_attempt(tmp_path, epochs_done=2)
    again = StepLog()
    resumed = Resume(tmp_path, "fp", saved.run_id, saved.rows, frozenset({1, 2}))
    tiny_fit([epoch_checkpoint(again, "run", resumed)], epochs=4)
    assert again.steps == [3, 4]


def test_an_epoch_saved_but_not_logged_is_logged_once(tmp_path):
    # killed between our save of epoch 2 and its logging: MLflow has step 1 only
    saved = first_attempt(tmp_path, epochs_done=2)
    again = StepLog()
    resumed = Resume(tmp_path, "fp", saved.run_id, saved.rows, frozenset({1}))
    tiny_fit([epoch_checkpoint(again, "run", resumed)], epochs=4)
    assert again.steps == [2, 3, 4]


def test_an_epoch_whose_keras_backup_was_killed_is_logged_once_when_it_reruns(tmp_path):
    # killed during Keras' own save of epoch 3, after ours: our state has 3 epochs, Keras' backup
    # (double_checkpoint) rewinds to 2, and MLflow never saw step 3
    saved = first_attempt(tmp_path, epochs_done=2)
    third = {**saved.rows[-1], "epoch": 3}
    resumed = Resume(tmp_path, "fp", saved.run_id, (*saved.rows, third), frozenset({1, 2}))
    again = StepLog()
    tiny_fit([epoch_checkpoint(again, "run", resumed)], epochs=4)
    assert again.steps == [3, 4]


def test_a_last_epoch_saved_but_not_logged_is_logged_at_the_end_of_a_fit_with_nothing_left(tmp_path):
    saved = first_attempt(tmp_path, epochs_done=3)
    again = StepLog()
    resumed = Resume(tmp_path, "fp", saved.run_id, saved.rows, frozenset({1, 2}))
    tiny_fit([epoch_checkpoint(again, "run", resumed)], epochs=3)
    assert again.steps == [3]
