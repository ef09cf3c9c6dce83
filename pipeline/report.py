"""report stage: one HW2-style report over every setting and seed, in Markdown and self-contained HTML.

For each dataset and sweep, the homework's table (setting | Train loss | Train acc | Val acc |
Test acc) as mean ± std over the seeds, the homework's numbers beside ours, and a verdict on
each difference; comparison figures, the most confused class pairs, each setting's figures and
architecture, and where every number came from (`pipeline.reporting.build` builds it).

Also writes the per-setting aggregates (a DVC metric) and, in MLflow, nests each setting's seed
runs under one parent run that carries them; logs the report as a run of the experiment
`hw2-report`; and tags the runs behind the workspace's results `current=true`.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.common.outputs import atomic_dir, write_json, write_text
from pipeline.job import TrainJob, load_job, run_params
from pipeline.model import view as model_view
from pipeline.params.load import load_params
from pipeline.params.schema import Params, Setting, Sweep, setting_values
from pipeline.provenance.record import record_provenance, shared_provenance
from pipeline.reporting.build import build_report
from pipeline.reporting.claims import judge_all, read_claims
from pipeline.reporting.homework import read_homework
from pipeline.reporting.records import dump, records_of
from pipeline.reporting.results import Architecture, Result, SeedResult, aggregates, mean_curve
from pipeline.tracking import store as tracking
from pipeline.tracking.outcome import run_outcome
from pipeline.tracking.run_files import missing_from_store, missing_runs_error, run_id_of
from pipeline.training.history import read_history


@dataclass(frozen=True)
class ReportJob:
    settings: dict[str, Setting]
    sweeps: dict[str, Sweep]
    seeds: tuple[int, ...]


def stage_params(params: Params, item: str = "") -> ReportJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    return ReportJob(params.settings, params.sweeps, params.seeds)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def seed_result(name: str, seed: int, y_test: np.ndarray, args) -> SeedResult | None:
    """One seed's outputs of the train and evaluate stages; None if any is not there (yet)."""
    files = [args.runs / name / f"seed{seed}.json", args.metrics / "train" / name / f"seed{seed}.json",
             args.metrics / "eval" / name / f"seed{seed}.json", args.history / name / f"seed{seed}.csv",
             args.predictions / name / f"seed{seed}.npy"]
    if not all(path.exists() for path in files):
        return None
    run, train, test, history, predictions = files
    correct = np.load(predictions).argmax(axis=1) == y_test
    return SeedResult(seed, read_json(train), read_json(test), read_history(history), correct, run_id_of(run))


def load_result(name: str, seeds: tuple[int, ...], args) -> tuple[Result, TrainJob]:
    """One setting's results over its seeds; its job file says what it trained with."""
    job = load_job(args.jobs / f"{name}.json", seeds[0])
    y_test = np.load(job.data / "y_test.npy")
    found = {seed: seed_result(name, seed, y_test, args) for seed in seeds}
    runs = [run for run in found.values() if run is not None]
    if not runs:
        raise PipelineError(f"setting {name}: no results for any of its seeds {list(seeds)} (run dvc repro)")
    view = model_view.read(args.views / name / f"seed{runs[0].seed}.npz")
    result = Result(name, job.setting, runs, [seed for seed, run in found.items() if run is None],
                    job.train.epochs, job.train.subset, job.data_md5,
                    Architecture(view.rows, view.trainable, view.frozen),
                    [(layer, kernel) for layer, kernel, _ in view.weights],
                    setting_values(job.setting, job.train, job.model))
    return result, job


def with_provenance(result: Result, client) -> Result:
    """The result with its runs' tags: what made each of them."""
    runs = [replace(run, tags=client.get_run(run.run_id).data.tags) for run in result.runs]
    return replace(result, runs=runs)


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HW2 report (regenerated)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse;margin:1em 0;font-size:0.92em}}th,td{{border:1px solid #ccc;padding:3px 8px}}
th{{background:#f3f3f3}}img{{max-width:100%}}code{{background:#f6f6f6;padding:0 3px}}</style>
</head><body>
{body}
</body></html>
"""


def embed_images(html: str, base: Path) -> str:
    """Inline every <img src="relative.png"> as a data URI: the HTML stands alone."""
    def inline(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(2)).read_bytes()).decode("ascii")
        return f'{match.group(1)}data:image/png;base64,{data}"'

    return re.sub(r'(<img src=")([^"]+\.png)"', inline, html)


def to_html(markdown: str, base: Path) -> str:
    """The Markdown as one self-contained HTML page; images are read from under `base`."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return embed_images(HTML_PAGE.format(body=body), base)


def group_seeds(client, result: Result, job: TrainJob, metrics: dict[str, float]) -> str:
    """The setting's parent run for these seeds of this job, with the aggregates and mean curves and
    what made its seeds (where they differ, it says so), its seed runs nested under it
    (mlflow.parentRunId); its id.

    MLflow cannot rewrite a metric's history, so a parent belongs to one set of seeds: when a seed
    is added, a new parent takes the seed runs over and the old one is deleted, and the setting
    still shows as one row that opens onto all its seeds."""
    seeds = ",".join(str(run.seed) for run in result.runs)
    from mlflow.entities import Metric, Param

    experiment = client.get_run(result.runs[0].run_id).info.experiment_id
    parents = client.search_runs([experiment], filter_string=f"tags.kind = 'parent' and tags.setting = "
                                 f"'{result.name}' and tags.job = '{job.digest}'")
    parent = next((run for run in parents if run.data.tags.get("seeds") == seeds), None)
    if parent is None:
        smoke = str(job.train.smoke_run).lower()
        made_by = shared_provenance([client.get_run(run.run_id).data.tags for run in result.runs])
        parent = client.create_run(experiment, run_name=result.name, tags={
            **made_by, "setting": result.name, "kind": "parent", "job": job.digest, "seeds": seeds,
            "dataset": job.dataset, "smoke_run": smoke, "data_md5": job.data_md5})
        now = int(time.time() * 1000)
        curves = [Metric(f"mean_{column}", float(value), now, int(epoch))
                  for column in ("loss", "accuracy", "val_loss", "val_accuracy")
                  for epoch, value in zip(*mean_curve(result, column)[:2])]
        params = {**{k: v for k, v in run_params(job).items() if k != "seed"}, "seeds": seeds}
        # the means also under the seed runs' own names: the runs table's val_accuracy and
        # test_accuracy columns then show the setting's row too
        means = {name.removesuffix("_mean"): value for name, value in metrics.items() if name.endswith("_mean")}
        logged = tracking.rounded({**metrics, **means})
        client.log_batch(parent.info.run_id, metrics=curves + [Metric(k, v, now, 0) for k, v in logged.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(parent.info.run_id, "FINISHED")
    for run in result.runs:
        client.set_tag(run.run_id, "mlflow.parentRunId", parent.info.run_id)
    for old in parents:
        if old.info.run_id != parent.info.run_id:
            client.delete_run(old.info.run_id)
    return parent.info.run_id


def mark_current(client, name: str, run_ids: set[str], sweeps: tuple[str, ...]) -> None:
    """Tag the runs this workspace's outputs come from `current=true` (and their sweeps), and no
    other run of the setting: several runs of one setting pile up as params change."""
    experiment = client.get_run(next(iter(run_ids))).info.experiment_id
    for run in client.search_runs([experiment], filter_string=f"tags.setting = '{name}' and tags.current = 'true'"):
        if run.info.run_id not in run_ids:
            client.delete_tag(run.info.run_id, "current")
    for run_id in run_ids:
        client.set_tag(run_id, "current", "true")
        client.set_tag(run_id, "sweeps", ",".join(sweeps))


def log_report(args, smoke: bool) -> None:
    """The report and its figures as one run of their own experiment (not among the training
    runs, whose metric charts would list it without data)."""
    import mlflow

    experiment = tracking.experiment_id(tracking.REPORT_EXPERIMENT, tracking.project_root())
    run = mlflow.start_run(experiment_id=experiment, run_name="report",
                           tags={"kind": "report", "smoke_run": str(smoke).lower()})
    with run_outcome(run.info.run_id):
        record_provenance(mlflow.MlflowClient(), run.info.run_id)
        mlflow.log_artifact(str(args.out), "report")
        mlflow.log_artifact(str(args.html), "report")
        mlflow.log_artifacts(str(args.summary), "report/summary")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, what in (("jobs", "job files"), ("metrics", "metrics/train and metrics/eval"),
                       ("history", "per-epoch CSVs"), ("runs", "run-id files"),
                       ("views", "model views (pipeline.model.view)"), ("predictions", "test predictions"),
                       ("figures", "per-setting figures"),
                       ("homework", "the homework's numbers (YAML)"), ("claims", "the homework's claims (YAML)"),
                       ("out", "Markdown report (written)"),
                       ("records", "every run's record, for the claims (JSON, written)"),
                       ("html", "HTML report (written)"), ("summary", "comparison figures (written)"),
                       ("aggregates", "per-setting mean/std/n/CI JSON (written)")):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params))
    homework = read_homework(args.homework)
    claims, claimed_settings = read_claims(args.claims, homework)

    import mlflow

    root = tracking.project_root()
    tracking.connect(root)
    client = mlflow.MlflowClient()
    loaded = {name: load_result(name, job.seeds, args) for name in job.settings}
    missing = missing_from_store(args.runs / name / f"seed{run.seed}.json"
                                          for name, (result, _) in loaded.items() for run in result.runs)
    if missing:  # before anything is written: the seed runs are what the report groups and tags
        raise missing_runs_error(missing)
    results = {name: with_provenance(result, client) for name, (result, _) in loaded.items()}
    records = [record for result in results.values() for record in records_of(result)]
    rows = judge_all(claims, claimed_settings, records, homework)
    report = build_report(results, job.sweeps, homework, (claims, rows))
    summaries = aggregates(results)

    with atomic_dir(args.summary) as tmp:
        for name, figure in report.figures.items():
            figure.savefig(tmp / f"{name}.png", dpi=110)
    write_text(args.out, report.markdown)
    write_text(args.html, to_html(report.markdown, args.out.parent))
    write_json(args.aggregates, summaries)
    write_text(args.records, dump(records))
    for name, (result, setting_job) in loaded.items():
        parent = group_seeds(client, result, setting_job, summaries[name])
        if Path.cwd().resolve() == root:  # not a DVC experiment in a temporary workspace
            sweeps = tuple(sweep_name for sweep_name, sweep in job.sweeps.items() if name in sweep.settings)
            mark_current(client, name, {parent, *(run.run_id for run in result.runs)}, sweeps)
    log_report(args, report.smoke)
    print(f"report: {args.out} and {args.html} ({len(results)} settings)", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
