"""The run file a train stage writes (runs/<setting>/seed<k>.json, a DVC output) and the MLflow run
it names, which evaluate, plot and report add to; a run the store lacks is one line naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common.errors import PipelineError, redact
from pipeline.common.state_files import read_json
from pipeline.tracking.store import mlflow_uri


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _RunFile:
    run_id: Annotated[str, Field(pattern=r"^\w+$")]
    experiment: str


def run_id_of(run_file: Path) -> str:
    """The MLflow run a train stage wrote into its run file (evaluate, plot and report add to it)."""
    # The run file is a DVC output of its train stage: `dvc checkout` restores it from the cache.
    recover = f"restore it: dvc checkout {run_file} (or train again: dvc repro train@<setting>-<seed>)"
    return read_json(run_file, _RunFile, "the run file", recover).run_id


def train_stage_of(run_file: Path) -> str:
    """The train stage that writes `run_file` (runs/<setting>/seed<k>.json, as dvc.yaml names it)."""
    return f"train@{Path(run_file).parent.name}-{Path(run_file).stem.removeprefix('seed')}"


def missing_from_store(run_files) -> list[tuple[Path, str]]:
    """(run file, run id) of each recorded training run that the current store does not have: the
    store was reset, or the outputs came from a teammate's store (`dvc pull`)."""
    import mlflow

    client, missing = mlflow.MlflowClient(), []
    for run_file in run_files:
        run_id = run_id_of(run_file)
        try:
            gone = client.get_run(run_id).info.lifecycle_stage == "deleted"
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # a server that fails is no missing run
                raise
            gone = True
        if gone:
            missing.append((Path(run_file), run_id))
    return missing


def missing_runs_error(missing: list[tuple[Path, str]]) -> PipelineError:
    """One line: which recorded runs the store lacks, and the two ways on."""
    (first, run_id), others = missing[0], len(missing) - 1
    which = f"{first}: run {run_id}" + (f" (and {others} more run file{'s' * (others > 1)})" if others else "")
    stages = " ".join(train_stage_of(run_file) for run_file, _ in missing)
    return PipelineError(f"{which} is not in the tracking store {redact(mlflow_uri())}: point MLFLOW_TRACKING_URI "
                         f"at the store that has it, or train again: dvc repro --force --downstream {stages}")


def recorded_run(run_file: Path) -> str:
    """The run id in a train stage's run file, for evaluate, plot and report to add to; a run that
    the store lacks stops the stage with one line (a new run in its place would hold the stage's
    results without the training's params, curves and model)."""
    missing = missing_from_store([run_file])
    if missing:
        raise missing_runs_error(missing)
    return run_id_of(run_file)
