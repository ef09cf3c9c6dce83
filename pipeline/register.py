"""register stage: the best setting of each dataset, as a version of a registered MLflow model.

One registered model per dataset and color (`mnist-cnn`, `cifar10-gray-cnn`, `cifar10-color-cnn`).
Its winner is the setting with the highest validation accuracy, mean over its seeds: the test
set stays for the report's verdicts, not for the choice. The version is the winner's best seed
(by validation accuracy) as a pyfunc model that takes raw images (pipeline.serving.pyfunc), with
the alias `champion`, or `smoke` for a smoke run (fewer epochs or images than the homework's), so
that a quick look never replaces a full-size model. Its tags say the setting, seeds, params, data
digest, mean validation and test accuracy, its training run and what made it (that run's code,
machine and library versions: pipeline/provenance/record.py), and what registered it.

A rerun that picks the same run (with the same serving code) registers no new version; a new
winner moves the alias. Writes what it registered to a JSON file (registry/champions.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_json
from pipeline.common.state_files import read_json
from pipeline.job import TrainJob, load_job, run_params
from pipeline.model.datasets import CLASS_NAMES, IMAGE_SIDES
from pipeline.params.load import load_params
from pipeline.params.schema import Params, Setting
from pipeline.preprocess import GRAY_WEIGHTS, read_normalization
from pipeline.provenance.record import is_provenance_key, provenance_tags
from pipeline.serving import logged
from pipeline.serving import pyfunc as serving_pyfunc
from pipeline.tracking import store as tracking
from pipeline.tracking.run_files import recorded_run


@dataclass(frozen=True)
class RegisterJob:
    settings: dict[str, Setting]
    seeds: tuple[int, ...]


def stage_params(params: Params, item: str = "") -> RegisterJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    return RegisterJob(params.settings, params.seeds)


REGISTER_PREFIX = "register."  # its own provenance on a version, beside its model's training's
COLOR = "cifar10-color-cnn"  # no experiment of its own: its runs are among cifar10-gray-cnn's
REGISTERED = {  # the registered models, with what each is
    tracking.EXPERIMENTS["mnist"]: "MNIST digits: the best setting of params.yaml on validation accuracy",
    tracking.EXPERIMENTS["cifar10"]: "CIFAR-10 in gray (the homework's): the best gray setting on validation accuracy",
    COLOR: "CIFAR-10 in color: the best color setting on validation accuracy",
}


def registered_name(dataset: str, color: str) -> str:
    """The registered model a setting competes for: its dataset's experiment name, the color ones apart
    (a color model cannot take the gray images the gray ones take)."""
    if dataset == "mnist":
        return tracking.EXPERIMENTS["mnist"]
    return tracking.EXPERIMENTS["cifar10"] if color == "gray" else COLOR


@dataclass(frozen=True)
class Candidate:
    """One setting's results over its seeds, as the choice sees them."""

    setting: str
    registered: str
    val_accuracy: dict[int, float]  # per seed that finished
    val_mean: float
    test_mean: float
    smoke: bool

    @property
    def best_seed(self) -> int:
        """The seed whose model is registered: the best on validation (the first of equals)."""
        return max(self.val_accuracy, key=lambda seed: (self.val_accuracy[seed], -seed))


def winners(candidates: list[Candidate]) -> dict[str, tuple[Candidate, str]]:
    """Per registered model: (the winner, its alias). The winner has the highest mean validation
    accuracy (the first in params.yaml's order of equals) among the full-size settings; only where
    there are none, among the smoke runs, and then with the alias `smoke`, never `champion`."""
    found: dict[str, tuple[Candidate, str]] = {}
    for name in dict.fromkeys(candidate.registered for candidate in candidates):
        group = [candidate for candidate in candidates if candidate.registered == name]
        full = [candidate for candidate in group if not candidate.smoke]
        pool = full or group
        best = max(pool, key=lambda candidate: (candidate.val_mean, -pool.index(candidate)))
        found[name] = (best, serving_pyfunc.SMOKE if best.smoke else serving_pyfunc.CHAMPION)
    return found


def version_tags(candidate: Candidate, job: TrainJob, run, code: str, registered_by: dict[str, str]) -> dict[str, str]:
    """What a version says about itself: what made its model (the training `run`'s provenance: code,
    machine, versions) and what registered it (`registered_by`, under `register.`); `run_id` and
    `serving_code` identify it (same run and serving code: the same version)."""
    params = {key: value for key, value in run_params(job).items() if key not in ("setting", "seed")}
    run_id, experiment_id = run.info.run_id, run.info.experiment_id
    return {
        **{key: value for key, value in run.data.tags.items() if is_provenance_key(key)},
        **registered_by,
        "setting": candidate.setting, "seed": str(candidate.best_seed),
        "seeds": ",".join(str(seed) for seed in candidate.val_accuracy),
        "params": json.dumps(params, sort_keys=True), "data_md5": job.data_md5,
        "val_accuracy_mean": f"{candidate.val_mean:.6f}", "test_accuracy_mean": f"{candidate.test_mean:.6f}",
        "smoke_run": str(candidate.smoke).lower(), "run_id": run_id,
        "run_link": f"#/experiments/{experiment_id}/runs/{run_id}", "serving_code": code,
    }


def description(candidate: Candidate) -> str:
    seeds = ", ".join(str(seed) for seed in candidate.val_accuracy)
    return (f"{candidate.setting} (seed {candidate.best_seed} of {seeds}): when registered, the best mean "
            f"validation accuracy of its kind, {candidate.val_mean:.4f}; mean test accuracy {candidate.test_mean:.4f}."
            + (" A smoke run: fewer epochs or images than the homework's." if candidate.smoke else ""))


def existing_version(client, name: str, tags: dict[str, str]):
    """The version of `name` that holds this run with this serving code, if one was registered."""
    import mlflow

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return None
    return next((version for version in versions if version.tags.get("run_id") == tags["run_id"]
                 and version.tags.get("serving_code") == tags["serving_code"]), None)


def preprocessing_record(job: TrainJob) -> dict:
    """How the job's training data were made from images: what the served model does to one."""
    return {"dataset": job.dataset, "color": job.setting.color, "side": IMAGE_SIDES[job.dataset],
            "gray_weights": list(GRAY_WEIGHTS), "normalization": read_normalization(job.data),
            "class_names": CLASS_NAMES[job.dataset]}


@pydantic_dataclass(config=ConfigDict(extra="allow"))
class _TrainMetrics:
    val_accuracy: float


@pydantic_dataclass(config=ConfigDict(extra="allow"))
class _Aggregate:
    val_accuracy_mean: float
    test_accuracy_mean: float


def load_candidate(name: str, seeds: tuple[int, ...], args, aggregates: dict) -> tuple[Candidate, TrainJob]:
    job = load_job(args.jobs / f"{name}.json", seeds[0])
    found = {seed: args.metrics / "train" / name / f"seed{seed}.json" for seed in seeds}
    val = {seed: read_json(path, _TrainMetrics, "the training metrics", f"dvc repro train@{name}-{seed}").val_accuracy
           for seed, path in found.items() if path.exists()}
    if not val or name not in aggregates:
        raise PipelineError(f"setting {name}: no results for any of its seeds {list(seeds)} (run dvc repro)")
    return Candidate(name, registered_name(job.dataset, job.setting.color), val, aggregates[name].val_accuracy_mean,
                     aggregates[name].test_accuracy_mean, job.train.smoke_run), job


def register(client, candidate: Candidate, alias: str, job: TrainJob, args, code: str,
             registered_by: dict[str, str]) -> tuple[bool, dict]:
    """The winner's version (an existing one, or a new one) under the alias: (was it new, what it is)."""
    import mlflow

    run_file = args.runs / candidate.setting / f"seed{candidate.best_seed}.json"
    run_id = recorded_run(run_file)
    run = client.get_run(run_id)
    experiment_id = run.info.experiment_id
    tags = version_tags(candidate, job, run, code, registered_by)
    version = existing_version(client, candidate.registered, tags)
    created = version is None
    if created:
        model_id = logged.log_served_model(args.models / candidate.setting / f"seed{candidate.best_seed}.keras",
                                           preprocessing_record(job), job.name, run_id, experiment_id)
        try:
            client.get_registered_model(candidate.registered)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(candidate.registered, description=REGISTERED[candidate.registered])
        version = client.create_model_version(candidate.registered, f"models:/{model_id}", run_id=run_id, tags=tags,
                                              description=description(candidate), model_id=model_id)
    client.set_registered_model_alias(candidate.registered, alias, version.version)
    entry = {"alias": alias, "version": int(version.version), "setting": candidate.setting,
             "seed": candidate.best_seed, "seeds": list(candidate.val_accuracy),
             "val_accuracy_mean": candidate.val_mean, "test_accuracy_mean": candidate.test_mean,
             "run_id": run_id, "uri": f"models:/{candidate.registered}@{alias}"}
    return created, entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.register", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, what in (("jobs", "job files"), ("metrics", "metrics/train (per-seed validation accuracy)"),
                       ("runs", "run-id files"), ("models", "trained Keras models"),
                       ("aggregates", "the report's per-setting means (metrics/aggregates.json)"),
                       ("out", "what was registered (JSON, written)")):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params))
    aggregates = read_json(args.aggregates, dict[str, _Aggregate], "the report's aggregates",
                           "the report stage writes it: dvc repro report")
    loaded = [load_candidate(name, job.seeds, args, aggregates) for name in job.settings]
    jobs = {candidate.setting: setting_job for candidate, setting_job in loaded}
    tracking.quiet_mlflow()

    import mlflow

    root = tracking.project_root()
    tracking.connect(root)
    client = mlflow.MlflowClient()
    code, registered_by = logged.serving_code(), provenance_tags(prefix=REGISTER_PREFIX)
    done = {}
    for name, (candidate, alias) in winners([candidate for candidate, _ in loaded]).items():
        created, done[name] = register(client, candidate, alias, jobs[candidate.setting], args, code, registered_by)
        print(f"{done[name]['uri']}: version {done[name]['version']}{' (new)' * created}, "
              f"{candidate.setting} (mean val acc {candidate.val_mean:.4f})", file=sys.stderr)
    write_json(args.out, done)


if __name__ == "__main__":
    cli.run(main)
