"""report stage: one HW2-style report over every setting, in Markdown and self-contained HTML.

For each dataset and sweep, the homework's table (setting | Train loss | Train acc | Val acc |
Test acc) with the homework's numbers beside ours, comparison figures, the most confused class
pairs, each setting's figures and architecture summary, and where every number came from
(`pipeline.report_build` builds it). The report and its figures are also logged to MLflow, as a
run of the experiment `hw2-report`, and the training runs behind it get the tag `current=true`.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import cli
from pipeline.config import Params, Setting, is_smoke_run, load_params
from pipeline.history import read_history
from pipeline.outputs import atomic_dir, write_text
from pipeline.report_build import Architecture, Result, build_report
from pipeline.runtime import load_tensorflow


@dataclass(frozen=True)
class ReportJob:
    settings: dict[str, Setting]
    epochs: int
    subset: float


def stage_params(params: Params, item: str = "") -> ReportJob:
    """The part of params.yaml this stage reads (dvc.yaml declares the same keys)."""
    return ReportJob(params.settings, params.train.epochs, params.train.subset)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_result(name: str, setting: Setting, args, client) -> Result:
    """One setting's outputs of the train, evaluate and plot stages, and its model's weights."""
    import keras

    from pipeline.models import summary_rows, weighted_layers

    run_id = read_json(args.runs / f"{name}.json")["run_id"]
    model = keras.models.load_model(args.models / f"{name}.keras")
    return Result(
        name, setting,
        read_json(args.metrics / "train" / f"{name}.json"),
        read_json(args.metrics / "eval" / f"{name}.json"),
        read_history(args.history / f"{name}.csv"),
        run_id, client.get_run(run_id).data.tags.get("data_md5", "unknown"),
        Architecture(*summary_rows(model)),
        [(layer, kernel) for layer, kernel, _ in weighted_layers(model)],
    )


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


def log_report(args, smoke: bool) -> None:
    """The report and its figures as one run of their own experiment (not among the training
    runs, whose metric charts would list it without data)."""
    import mlflow

    from pipeline import tracking

    experiment = tracking.experiment_id(tracking.REPORT_EXPERIMENT, tracking.project_root())
    run = mlflow.start_run(experiment_id=experiment, run_name="report",
                           tags={"kind": "report", "smoke_run": str(smoke).lower()})
    with tracking.run_outcome(run.info.run_id):
        mlflow.log_artifact(str(args.out), "report")
        mlflow.log_artifact(str(args.html), "report")
        mlflow.log_artifacts(str(args.summary), "report/summary")


def mark_current(client, results: dict[str, Result]) -> None:
    """Tag the runs this workspace's outputs come from `current=true`, and no other run of their
    settings: several runs of one setting pile up in an experiment as params change."""
    from pipeline import tracking

    if Path.cwd().resolve() != tracking.project_root():
        return  # a DVC experiment in a temporary workspace: the main workspace did not change
    for result in results.values():
        experiment = client.get_run(result.run_id).info.experiment_id
        earlier = client.search_runs([experiment], filter_string=f"tags.setting = '{result.name}' "
                                     "and tags.current = 'true'")
        for run in earlier:
            if run.info.run_id != result.run_id:
                client.delete_tag(run.info.run_id, "current")
        client.set_tag(result.run_id, "current", "true")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=Path, required=True, help="metrics/train and metrics/eval")
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--figures", type=Path, required=True, help="per-setting figures")
    parser.add_argument("--homework", type=Path, required=True, help="the homework's numbers (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="Markdown report (written)")
    parser.add_argument("--html", type=Path, required=True, help="HTML report (written)")
    parser.add_argument("--summary", type=Path, required=True, help="comparison figures (written)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    job = stage_params(load_params(args.params))
    homework = yaml.safe_load(args.homework.read_text(encoding="utf-8"))

    import mlflow

    from pipeline import tracking

    tracking.connect(tracking.project_root())
    load_tensorflow()
    client = mlflow.MlflowClient()
    results = {name: load_result(name, setting, args, client) for name, setting in job.settings.items()}
    report = build_report(results, job.epochs, job.subset, homework)

    with atomic_dir(args.summary) as tmp:
        for name, figure in report.figures.items():
            figure.savefig(tmp / f"{name}.png", dpi=110)
    write_text(args.out, report.markdown)
    write_text(args.html, to_html(report.markdown, args.out.parent))
    log_report(args, is_smoke_run(job.epochs, job.subset))
    mark_current(client, results)
    print(f"report: {args.out} and {args.html} ({len(results)} settings)", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
