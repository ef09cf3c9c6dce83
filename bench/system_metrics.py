"""What MLflow's system metrics cost a training: the train stage's path (pipeline.train.fit) at
`make quick`'s batch size, with the sampler on and off, in alternating rounds (A B A B), at the
rate a quick run gets (pipeline/tracking/system_metrics.py: every second, its fastest). Prints the
median seconds per epoch of each and the difference, with the machine kind; and, as the bound the
epochs' noise hides, the time of one sample (what the sampler does each interval) and the share of
a core that takes at that rate.

    python -m bench.system_metrics                      # MNIST k3, 10,800 images (make quick's 20 %)
    python -m bench.system_metrics --rounds 4 --json system-metrics.json

The first epoch of each training (tracing, warm-up) is never counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import add_data_arguments, bench_data, bench_job, first_setting, load_arrays, table
from bench.training import pipeline_path
from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.params.load import load_params
from pipeline.params.schema import SIZES
from pipeline.provenance.machine import this_machine
from pipeline.tracking.system_metrics import FASTEST_SECONDS, sample_every

QUICK = SIZES["quick"]


def sample_cost(work: Path, samples: int = 50) -> float:
    """Median seconds of what MLflow's sampler does once per interval: read CPU, memory, disk and
    network, and look the run up (it stops when the run has ended), on a store like the stages'."""
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{work / 'sampler.db'}")
    run_id = client.create_run(client.create_experiment("sampler")).info.run_id
    monitor = SystemMetricsMonitor(run_id, tracking_uri=client.tracking_uri)
    seconds = []
    for _ in range(samples):
        started = time.perf_counter()
        monitor.collect_metrics()
        client.get_run(run_id)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(args, work: Path) -> dict:
    params = load_params(args.params)
    name = first_setting(params, "mnist")
    data = work / "data" / "mnist"
    job = bench_job(params, name, data)
    job = replace(job, train=replace(job.train, epochs=args.epochs, subset=1.0, batch_size=QUICK["train.batch_size"]))
    source = bench_data(args.data, "mnist", args.train_samples, args.val_samples, data)
    n_train = len(load_arrays(data)[1])
    print(f"{name}: {n_train} images ({source}), batch {job.train.batch_size}, {args.rounds} rounds x {args.epochs} "
          f"epochs, sampled every {FASTEST_SECONDS:g} s; {this_machine().kind}", file=sys.stderr, flush=True)
    sample_every(FASTEST_SECONDS)
    epochs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for sampled in (False, True):
            epochs[sampled] += pipeline_path(job, data, work, system_metrics=sampled)[0][1:]
    off, on = statistics.median(epochs[False]), statistics.median(epochs[True])
    sample = sample_cost(work)
    return {"setting": name, "machine": this_machine().kind, "train_images": n_train,
            "batch_size": job.train.batch_size, "epochs_counted": len(epochs[True]),
            "s_per_epoch_off": round(off, 3), "s_per_epoch_on": round(on, 3),
            "difference_percent": round(100 * (on - off) / off, 2),
            "range_off_s": [round(min(epochs[False]), 2), round(max(epochs[False]), 2)],
            "range_on_s": [round(min(epochs[True]), 2), round(max(epochs[True]), 2)],
            "sample_ms": round(1000 * sample, 2), "core_share_percent": round(100 * sample / FASTEST_SECONDS, 3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.system_metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, train_samples=10_800, val_samples=6_000)
    parser.add_argument("--epochs", type=int, default=3, help="per training; the first is not counted")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of off and on")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        raise PipelineError("--epochs: at least 2 (the first epoch traces and warms up, and is not counted)")
    with tempfile.TemporaryDirectory(prefix="bench-system-metrics-") as tmp:
        row = measure(args, Path(tmp))
    print(table([row], list(row)))
    if args.json:
        from pipeline.common.outputs import write_json

        write_json(args.json, row)


if __name__ == "__main__":
    cli.run(main)
