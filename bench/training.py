"""The train stage's path against plain Keras, on this machine, in one run.

For one setting per dataset it trains the same model at the same batch size twice: with a plain
`model.fit(x, y_onehot)` on in-memory arrays, and through `pipeline.train.fit` (the train
stage's path: params' precision / XLA / steps_per_execution / distribute options, per-epoch
MLflow logging into a throw-away store, backup for resumption). It prints samples/s, s/epoch,
their ratio — the peer ratio: plain Keras in float32 against the pipeline in the precision
`train.precision` resolves to here (bf16 with `auto` on a CPU with bf16 instructions) — the
achieved GFLOP/s (FLOPs counted from the layer shapes) and, with --peak-gflops, the fraction of
peak; and the share of epoch time spent logging to MLflow, timed from outside the stage's code.
Table on stdout, all figures with --json.

    python -m bench.training                              # prepared data if present, else random
    python -m bench.training --train-samples 0 --epochs 3 --json bench.json   # full splits
    python -m bench.training --precisions float32 mixed_bfloat16   # bf16's own speed-up, one row each

With several --precisions the pipeline path runs once per precision in every round (plain, then
each precision in turn), so their rows share the plain peer and the drift of the shared host.

The first epoch (tracing, warm-up) is never counted: figures are medians over the others.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import get_args

from bench.common import (
    add_data_arguments,
    bench_data,
    bench_job,
    epoch_flops,
    first_setting,
    forward_flops,
    load_arrays,
    table,
    timed_fit,
)
from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.model.datasets import num_classes
from pipeline.params.load import load_params
from pipeline.params.schema import Params, Precision


class TimedLogging:
    """MLflow's module as the train stage sees it, with the time of each `log_metrics` noted."""

    def __init__(self, mlflow):
        self._mlflow = mlflow
        self.seconds: list[float] = []

    def log_metrics(self, *args, **kwargs):
        started = time.perf_counter()
        self._mlflow.log_metrics(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)

    def __getattr__(self, name):
        return getattr(self._mlflow, name)


def plain_keras(job, data: Path, epochs: int) -> list[float]:
    """The baseline: the same model, defaults everywhere, numpy arrays straight into fit."""
    import keras

    from pipeline.model.network import build_model, compile_model

    keras.utils.set_random_seed(job.seed)
    keras.mixed_precision.set_global_policy("float32")
    model = compile_model(build_model(job.name, job.setting, job.model), job.train.learning_rate, job.train.optimizer)
    return timed_fit(model, num_classes(job.setting.dataset), *load_arrays(data), job.train.batch_size, epochs)


def pipeline_path(job, data: Path, work: Path, system_metrics: bool = False) -> tuple[list[float], list[float], object]:
    """pipeline.train.fit as the train stage calls it, logging to a store under `work` (with MLflow's
    system metrics sampled beside it, or not): its epoch seconds, the seconds of each epoch's MLflow
    logging, and what it trained (train.Trained)."""
    import mlflow

    from pipeline import train
    from pipeline.training.checkpoint import Resume

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.set_experiment("bench")
    logging = TimedLogging(mlflow)
    with mlflow.start_run(experiment_id=experiment.experiment_id, log_system_metrics=system_metrics) as run:
        resume = Resume(work / "backup" / job.name, "bench")
        with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines; stdout holds the table
            trained = train.fit(job, logging, run.info.run_id, resume)
        resume.clear()
    return [row["seconds"] for row in trained.rows], logging.seconds, trained


def compare(params: Params, args, work: Path) -> list[dict]:
    results = []
    for dataset in args.datasets:
        name = first_setting(params, dataset)
        if name is None:
            continue
        data = work / "data" / dataset
        # the benchmark picks the images (--train-samples): no further subset
        job = bench_job(params, name, data)
        job = replace(job, train=replace(job.train, epochs=args.epochs, subset=1.0))
        source = bench_data(args.data, dataset, args.train_samples, args.val_samples, data)
        n_train, n_val = (len(a) for a in load_arrays(data)[1::2])
        print(f"{name}: {n_train} train / {n_val} val images ({source}), {args.rounds} x {args.epochs} epochs per path",
              file=sys.stderr, flush=True)
        # Rounds alternate the two paths: on a shared machine the speed drifts (the same
        # epoch measured 10 s and 20 s minutes apart here), and alternation spreads the drift.
        precisions = args.precisions or [job.train.precision]
        plain_epochs: list[float] = []
        pipeline_epochs: dict[str, list[float]] = {p: [] for p in precisions}
        logging: dict[str, list[float]] = {p: [] for p in precisions}
        resolved: dict[str, str] = {}
        for _ in range(args.rounds):
            plain_epochs += plain_keras(job, data, args.epochs)[1:]
            for precision in precisions:
                epochs, logged, trained = pipeline_path(
                    replace(job, train=replace(job.train, precision=precision)), data, work)
                pipeline_epochs[precision] += epochs[1:]
                logging[precision] += logged[1:]
                resolved[precision] = trained.precision
        flops = epoch_flops(forward_flops(trained.model), n_train, n_val)
        for precision in precisions:
            results.append(result_row(job, args, source, n_train, n_val, flops, plain_epochs,
                                      pipeline_epochs[precision], logging[precision], resolved[precision]))
    return results


def result_row(job, args, source: str, n_train: int, n_val: int, flops: float, plain_epochs: list[float],
               pipeline_epochs: list[float], logging: list[float], precision: str) -> dict:
    baseline, ours = statistics.median(plain_epochs), statistics.median(pipeline_epochs)
    row = {
        "setting": job.name, "data": source, "train_samples": n_train, "val_samples": n_val,
        "batch_size": job.train.batch_size, "plain_precision": "float32", "precision": precision,
        "jit_compile": job.train.jit_compile, "steps_per_execution": job.train.steps_per_execution,
        "plain_s_per_epoch": round(baseline, 3), "pipeline_s_per_epoch": round(ours, 3),
        "plain_samples_per_s": round(n_train / baseline, 1), "pipeline_samples_per_s": round(n_train / ours, 1),
        "speedup": round(baseline / ours, 3),
        "pipeline_gflops": round(flops / ours / 1e9, 1), "plain_gflops": round(flops / baseline / 1e9, 1),
        "plain_epoch_range_s": [round(min(plain_epochs), 2), round(max(plain_epochs), 2)],
        "pipeline_epoch_range_s": [round(min(pipeline_epochs), 2), round(max(pipeline_epochs), 2)],
        # an epoch's seconds end where the checkpoint callback starts logging it
        "mlflow_logging_share": round(statistics.median(logging) / (ours + statistics.median(logging)), 5),
    }
    if args.peak_gflops:
        row["pipeline_fraction_of_peak"] = round(row["pipeline_gflops"] / args.peak_gflops, 3)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3, help="per path and round; the first is not counted")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two paths")
    parser.add_argument("--peak-gflops", type=float, help="the machine's peak, for the fraction of peak")
    parser.add_argument("--precisions", nargs="+", choices=get_args(Precision),
                        help="the pipeline path under each (default: params' train.precision)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        raise PipelineError("--epochs: at least 2 (the first epoch traces and warms up, and is not counted)")
    report: dict[str, object] = {"machine": os.uname().machine, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        report["training"] = compare(load_params(args.params), args, Path(tmp))
    print(table(report["training"], ["setting", "data", "train_samples", "batch_size", "precision", "plain_s_per_epoch",
                                     "pipeline_s_per_epoch", "plain_samples_per_s", "pipeline_samples_per_s",
                                     "speedup", "plain_epoch_range_s", "pipeline_epoch_range_s", "pipeline_gflops",
                                     *(["pipeline_fraction_of_peak"] if args.peak_gflops else []),
                                     "mlflow_logging_share"]))
    if args.json:
        from pipeline.common.outputs import write_json

        write_json(args.json, report)


if __name__ == "__main__":
    cli.run(main)
