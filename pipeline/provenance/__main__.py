"""One run's provenance, a line per item, to quote in a doc beside the figure it made:

    python -m pipeline.provenance RUN_ID     # the project's store, or MLFLOW_TRACKING_URI's

What ran (setting, seed, stage, command), the code (commit, and the uncommitted edit's digest and
where the patch is), the machine kind and library versions, the precision and data, and what the
machine did meanwhile (its system metrics' means and peaks).
"""

from __future__ import annotations

import argparse
import statistics

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.provenance.record import NOT_RECORDED, versions_of

# The system metrics summed up, by MLflow's names, with their units.
USAGE = (("system/cpu_utilization_percentage", "CPU", "%"), ("system/system_memory_usage_megabytes", "memory", " MB"))


def usage_line(histories: dict[str, list[float]]) -> str:
    """Mean and peak of each of the machine's uses over the run, and how many samples there were."""
    parts = [f"{name} {statistics.fmean(values):.0f}{unit} mean, {max(values):.0f}{unit} peak"
             for key, name, unit in USAGE if (values := histories.get(key))]
    gpus = sorted(key for key in histories if key.startswith("system/gpu_") and key.endswith("_utilization_percentage"))
    parts += [f"{key.removeprefix('system/').removesuffix('_utilization_percentage')} "
              f"{statistics.fmean(histories[key]):.0f}% mean" for key in gpus]
    samples = max((len(values) for values in histories.values()), default=0)
    return f"{'; '.join(parts)} ({samples} samples)" if parts else NOT_RECORDED


def describe(run, histories: dict[str, list[float]]) -> list[str]:
    """The lines `python -m pipeline.provenance` prints for a run (an mlflow Run)."""
    tags, params = run.data.tags, run.data.params

    def tag(key: str) -> str:
        return tags.get(key, NOT_RECORDED)

    seconds = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
    length = f", {seconds:.0f} s" if seconds is not None else ""
    what = " ".join(part for part in (tags.get("setting"), tags.get("seed") and f"seed {tags['seed']}") if part)
    lines = [f"run       {run.info.run_id} ({what or run.info.run_name}; {run.info.status}{length})",
             f"code      {tag('git_commit')}, uncommitted edits: {tag('git_dirty')}; patch: {tag('code_diff')}",
             f"command   {tag('command')} (stage {tag('dvc_stage')})",
             f"machine   {tag('machine')} (host {tag('host')}, {tag('machine.os')})",
             f"versions  {versions_of(tags) or NOT_RECORDED}",
             f"precision {params.get('precision', NOT_RECORDED)}; data md5 {tag('data_md5')}",
             f"usage     {usage_line(histories)}"]
    if "evaluate.code" in tags:
        lines.append(f"evaluate  code {tags['evaluate.code']}, on {tag('evaluate.machine')}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.provenance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", help="an MLflow run id (the UI's run page, or a report's provenance table)")
    args = parser.parse_args(argv)

    import mlflow

    from pipeline.tracking import store as tracking

    tracking.connect(tracking.project_root())
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(args.run_id)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise PipelineError(f"run {args.run_id}: not in the tracking store {redact(tracking.mlflow_uri())}") from None
    histories = {key: [metric.value for metric in client.get_metric_history(run.info.run_id, key)]
                 for key in run.data.metrics if key.startswith("system/")}
    print("\n".join(describe(run, histories)))


if __name__ == "__main__":
    cli.run(main)
