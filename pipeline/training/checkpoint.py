"""Resuming an interrupted training: where it left off, and the per-epoch checkpoint that records it.

State lives under `.dvc/tmp/train-backup/<setting>/seed<k>/`, a directory that is no DVC output (DVC
deletes those before a stage runs), beside Keras' BackupAndRestore files, and is used only
while the job (hyperparameters, data, tracking store) is the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_json
from pipeline.common.state_files import read_json
from pipeline.tracking.store import TrackingUnavailable, rounded
from pipeline.training.history import HISTORY_FIELDS, history_row


def fingerprint(run_params: dict, data_digest: str, tracking_uri: str) -> str:
    """Same hyperparameters, data and tracking store: only then may a backup be resumed."""
    return hashlib.md5(json.dumps([run_params, data_digest, tracking_uri], sort_keys=True).encode()).hexdigest()


def backup_dir(root: Path, setting: str, seed: int) -> Path:
    return root / ".dvc" / "tmp" / "train-backup" / setting / f"seed{seed}"


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _Row:
    """An epoch's history row (history_row), as Resume.save wrote it."""

    epoch: Annotated[int, Field(gt=0)]
    loss: float  # NaN where the epoch ended in a non-finite loss
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: Annotated[float, Field(ge=0)]


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _State:
    fingerprint: str
    run_id: Annotated[str, Field(pattern=r"^\w+$")]
    rows: list[_Row]


@dataclass
class Resume:
    """Where an interrupted training run left off: its MLflow run and finished epochs."""

    directory: Path
    fingerprint: str
    run_id: str | None = None
    rows: tuple = ()
    logged_steps: frozenset = frozenset()  # epochs the resumed run has in MLflow (set when it is reopened)

    @classmethod
    def load(cls, directory: Path, fingerprint: str) -> Resume:
        state_file = directory / "state.json"
        if state_file.exists():
            recover = (f"delete {directory} and run the stage again (dvc repro train@{directory.parent.name}-"
                       f"{directory.name.removeprefix('seed')}): the training starts over")
            state = read_json(state_file, _State, "the state of an interrupted training", recover)
            if [row.epoch for row in state.rows] != list(range(1, len(state.rows) + 1)):
                raise PipelineError(f"{state_file}: the state of an interrupted training: rows: epochs "
                                    f"{[row.epoch for row in state.rows]} are not 1, 2, ...; {recover}")
            if state.fingerprint == fingerprint:
                return cls(directory, fingerprint, state.run_id, tuple(asdict(row) for row in state.rows))
            shutil.rmtree(directory)  # a backup of another job: start over
        return cls(directory, fingerprint)

    def save(self, run_id: str, rows: list[dict]) -> None:
        write_json(self.directory / "state.json", {"fingerprint": self.fingerprint, "run_id": run_id, "rows": rows})
        self.run_id, self.rows = run_id, tuple(rows)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def kept_only_if_interrupted(self):
        """Only a run that was interrupted, or lost its tracking server, is resumed (the user is
        told from where); a failed one starts over."""
        try:
            yield
        except (KeyboardInterrupt, TrackingUnavailable) as exc:
            exc.add_note(f"`dvc repro` resumes the training after epoch {len(self.rows)}" if self.rows
                         else "no epoch had finished: `dvc repro` starts the training again")
            raise
        except BaseException:
            self.clear()
            raise


# The tests that stop a training mid-run (Ctrl-C, a lost machine, a tracking server that goes away)
# set this to a file's path: a training holds after its first epoch is saved and logged until that
# file exists, so that the stop lands mid-training however loaded the machine is. Unset: no hold.
HOLD_AFTER_FIRST_EPOCH_ENV = "PIPELINE_HOLD_AFTER_FIRST_EPOCH_UNTIL"


def hold_after_first_epoch() -> None:
    release = os.environ.get(HOLD_AFTER_FIRST_EPOCH_ENV)
    while release and not Path(release).exists():
        time.sleep(0.05)


def epoch_metrics(row: dict) -> dict[str, float]:
    """What an epoch logs to MLflow, from its history row: what a resumed run can log again."""
    return rounded({**{k: row[k] for k in HISTORY_FIELDS[1:5]}, "epoch_seconds": row["seconds"]})


def log_missing_epochs(mlflow, run_id: str, rows, logged_steps: set[int]) -> None:
    """Log the saved epochs that never reached MLflow (the process died between saving an epoch
    and logging it): every epoch ends up logged exactly once."""
    for row in rows:
        if row["epoch"] not in logged_steps:
            mlflow.log_metrics(epoch_metrics(row), step=row["epoch"], run_id=run_id)


def epoch_checkpoint(mlflow, run_id: str, resume: Resume):
    """Keras callback that closes each epoch with one uninterruptible step: its history row and
    Keras' BackupAndRestore state saved where a resumed run finds them, then its metrics logged to
    MLflow (step = epoch, 1-based, synchronously). Its `rows` hold every finished epoch.

    Saving first: a SIGKILL (which cannot be deferred) between the two leaves an epoch saved but
    not logged, which the next attempt logs (log_missing_epochs); the other order would log an
    epoch twice when it re-runs. The next attempt logs them only once Keras has restored its backup
    (the first epoch it begins, or the end of a fit with none left): a kill during Keras' own save
    rewinds it one epoch, and that epoch, re-run, is logged when it ends.

    Not mlflow.keras.MlflowCallback: it also logs validation_* metrics at step 0 on every
    evaluation (duplicate steps) and logs asynchronously, so a killed run can lose epochs.
    """
    import keras

    class EpochCheckpoint(keras.callbacks.BackupAndRestore):
        def __init__(self):
            # double_checkpoint: a SIGKILL (which cannot be deferred) mid-save leaves the previous one
            super().__init__(str(resume.directory / "keras"), double_checkpoint=True)
            self.rows = list(resume.rows)
            self.settled = False

        def on_epoch_begin(self, epoch, logs=None):
            self.log_saved_epochs_keras_kept(epoch)
            self.started = time.perf_counter()

        def on_train_end(self, logs=None):
            self.log_saved_epochs_keras_kept(len(self.rows))
            super().on_train_end(logs)

        def log_saved_epochs_keras_kept(self, first_epoch: int) -> None:
            if self.settled:
                return
            del self.rows[first_epoch:]
            log_missing_epochs(mlflow, run_id, self.rows, resume.logged_steps)
            self.settled = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.started
            with cli.deferred_interrupts():
                del self.rows[epoch:]  # after a SIGKILL between the two saves, this epoch re-ran
                self.rows.append(history_row(epoch + 1, logs, seconds))
                resume.save(run_id, self.rows)
                super().on_epoch_end(epoch, logs)
                mlflow.log_metrics(epoch_metrics(self.rows[-1]), step=epoch + 1, run_id=run_id)
            if epoch == 0:
                hold_after_first_epoch()

    return EpochCheckpoint()
