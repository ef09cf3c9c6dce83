"""job stage: what one setting trains, resolved into one JSON file, jobs/<setting>.json.

The setting's values, its dataset's model options, the shared train values, and where its
prepared data lie with their digest. Every (setting, seed) train stage depends on this file and
on nothing in params.yaml: DVC's matrix of settings x seeds cannot look up a setting's dataset,
and this way DVC retrains a setting exactly when something it trains on changes (an edit of a
sweep label rewrites the same file, which retrains nothing), and a new seed trains only its runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_text
from pipeline.common.state_files import read_json
from pipeline.params.load import load_params
from pipeline.params.schema import Cifar10ModelConfig, MnistModelConfig, Params, Setting, TrainConfig, resolve
from pipeline.provenance.data import data_md5


@dataclass(frozen=True)
class TrainJob:
    """One training run: a setting's resolved values, its data, and the run's seed."""

    name: str
    setting: Setting
    model: MnistModelConfig | Cifar10ModelConfig
    train: TrainConfig
    data: Path
    data_md5: str
    seed: int = 0

    @property
    def digest(self) -> str:
        """Identifies what the job trains, seed aside: the seeds of one job form one group."""
        return hashlib.md5(job_text(self).encode()).hexdigest()

    @property
    def dataset(self) -> str:
        return self.setting.dataset


def stage_params(params: Params, name: str) -> tuple[Setting, TrainConfig, MnistModelConfig | Cifar10ModelConfig]:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys): the setting, the
    shared train values and its dataset's model options."""
    setting = params.settings[name]
    return setting, params.train, getattr(params.models, setting.dataset)


def job_text(job: TrainJob) -> str:
    """The job file: sorted keys and no seed, so that the same job always gives the same bytes.
    The setting's overrides are in the model and train values it resolved to."""
    document = {
        "setting": job.name,
        "values": {k: v for k, v in asdict(job.setting).items() if v is not None},
        "model": asdict(job.model),
        "train": asdict(job.train),
        "data": job.data.as_posix(),
        "data_md5": job.data_md5,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def run_params(job: TrainJob) -> dict[str, object]:
    """Every hyperparameter of params.yaml that the job's run uses, flat, as MLflow params."""
    flat: dict[str, object] = {"setting": job.name, "seed": job.seed}
    flat.update({k: v for k, v in asdict(job.setting).items() if v is not None})
    flat.update({f"model.{k}": v for k, v in asdict(job.model).items()})
    flat.update({f"train.{k}": v for k, v in asdict(job.train).items()})
    return flat


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _JobFile:
    """What job_text writes."""

    setting: Annotated[str, Field(min_length=1)]
    values: Setting
    model: MnistModelConfig | Cifar10ModelConfig
    train: TrainConfig
    data: Annotated[str, Field(min_length=1)]  # "" would be Path(""), the working directory
    data_md5: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]

    @field_validator("values", mode="before")
    @classmethod
    def _every_own_value(cls, values):
        """job_text writes each value a setting has of its own: a default (color gray) must not
        stand in for one that was lost."""
        if isinstance(values, dict):
            missing = [f.name for f in fields(Setting) if f.default is not None and f.name not in values]
            if missing:
                raise ValueError(f"missing key {missing[0]}")
        return values


def load_job(path: Path, seed: int) -> TrainJob:
    """A job file as the typed job of one seed's run."""
    recover = "the job stage writes it: dvc repro job@<setting>"
    document = read_json(path, _JobFile, "the job file", recover)
    model_type = MnistModelConfig if document.values.dataset == "mnist" else Cifar10ModelConfig
    if not isinstance(document.model, model_type):
        raise PipelineError(f"{path}: the job file: model: not the options of a {document.values.dataset} model "
                            f"({asdict(document.model)}); {recover}")
    return TrainJob(document.setting, document.values, document.model, document.train, Path(document.data),
                    document.data_md5, seed)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", help="a key under `settings:` in params.yaml")
    parser.add_argument("data", type=Path, help="prepared data directory of the setting's dataset (its rgb/ "
                        "subdirectory for a color setting)")
    parser.add_argument("job", type=Path, help="the job file (written)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    own, train, model = resolve(*stage_params(load_params(args.params, setting=args.setting), args.setting))
    data = args.data / "rgb" if own.color == "rgb" else args.data
    job = TrainJob(args.setting, own, model, train, data, data_md5(data))
    write_text(args.job, job_text(job))
    print(f"{args.setting}: job {job.digest[:8]} -> {args.job}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
