"""s/epoch of one setting per dataset under each precision x XLA x batch size, and trainings
side by side on one device: the script for a GPU box (bench/gpu.sh runs it).

Keras only (no TensorFlow call), so that it runs on whichever Keras backend the box has.

    python -m bench.options --train-samples 0 --val-samples 0 --epochs 3
    python -m bench.options --precisions mixed_bfloat16 --jit-compile true --batch-sizes 128 --jobs 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import add_data_arguments, bench_data, bench_job, first_setting, load_arrays, steady, table, timed_fit
from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.model.datasets import num_classes
from pipeline.params.load import load_params
from pipeline.params.schema import Params


def run_options(params: Params, args, work: Path) -> list[dict]:
    import keras

    from pipeline.model.network import build_model, compile_model

    rows = []
    arrays_of: dict[str, list] = {}
    grid = itertools.product(args.datasets, args.precisions, args.jit_compile, args.batch_sizes)
    for dataset, precision, jit, batch in grid:
        name = first_setting(params, dataset)
        if name is None:
            continue
        if dataset not in arrays_of:
            data = work / "data" / dataset
            bench_data(args.data, dataset, args.train_samples, args.val_samples, data)
            arrays_of[dataset] = load_arrays(data)
        arrays = arrays_of[dataset]
        job = bench_job(params, name)
        row = {"setting": name, "backend": keras.backend.backend(), "precision": precision, "jit_compile": jit,
               "batch_size": batch, "steps_per_execution": args.steps_per_execution}
        try:
            keras.backend.clear_session()
            keras.utils.set_random_seed(job.seed)
            keras.mixed_precision.set_global_policy(precision)
            model = compile_model(build_model(name, job.setting, job.model), job.train.learning_rate,
                                  job.train.optimizer, jit_compile=jit, steps_per_execution=args.steps_per_execution)
            seconds = steady(timed_fit(model, num_classes(dataset), *arrays, batch, args.epochs))
            row.update(s_per_epoch=round(seconds, 3), samples_per_s=round(len(arrays[0]) / seconds, 1))
        except Exception as exc:  # one option failing (say bf16 on a card without it) is a result too
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    keras.mixed_precision.set_global_policy("float32")
    return rows


def side_by_side(params: Params, args, work: Path) -> dict:
    """--jobs trainings at once on one device (the first precision, XLA value and batch size
    given), datasets alternating; and what that suggests for the whole sweep at params' epochs."""
    commands = []
    for i in range(args.jobs):
        dataset = args.datasets[i % len(args.datasets)]
        commands.append((dataset, work / f"job-{i}.json", [
            sys.executable, "-m", "bench.options", "--params", str(args.params), "--data", str(args.data),
            "--datasets", dataset, "--precisions", args.precisions[0],
            "--jit-compile", str(args.jit_compile[0]).lower(), "--batch-sizes", str(args.batch_sizes[0]),
            "--steps-per-execution", str(args.steps_per_execution), "--train-samples", str(args.train_samples),
            "--val-samples", str(args.val_samples), "--epochs", str(args.epochs), "--json", str(work / f"job-{i}.json"),
        ]))
    started = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _, _, command in commands]
    errors = [p.communicate()[1] for p in processes]
    wall = time.perf_counter() - started
    seconds: dict[str, list[float]] = {}
    for (dataset, result, _), process, stderr in zip(commands, processes, errors):
        if process.returncode != 0 or not result.exists():
            raise PipelineError(f"a side-by-side job ({dataset}) failed: {stderr.strip().splitlines()[-1:]}")
        row = json.loads(result.read_text())["options"][0]
        if "error" in row:
            raise PipelineError(f"a side-by-side job ({dataset}) failed: {row['error']}")
        seconds.setdefault(dataset, []).append(row["s_per_epoch"])
    per_epoch = {dataset: statistics.median(values) for dataset, values in seconds.items()}
    settings = [s.dataset for s in params.settings.values() if s.dataset in per_epoch]
    sweep = sum(params.train.epochs * per_epoch[d] for d in settings) / args.jobs
    return {"jobs": args.jobs, "wall_seconds": round(wall, 1), "s_per_epoch_while_shared": per_epoch,
            "settings": len(settings), "epochs": params.train.epochs,
            "estimated_sweep_minutes": round(sweep / 60, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.options", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3, help="per option; the first is not counted")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--jit-compile", nargs="+", type=lambda v: v == "true", default=[False, True],
                        metavar="{false,true}")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=0, help="then this many trainings at once, sharing the device")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        raise PipelineError("--epochs: at least 2 (the first epoch traces and warms up, and is not counted)")
    params = load_params(args.params)
    report: dict[str, object] = {"machine": os.uname().machine, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-options-") as tmp:
        report["options"] = run_options(params, args, Path(tmp))
        print(table(report["options"], ["setting", "backend", "precision", "jit_compile", "batch_size", "s_per_epoch",
                                        "samples_per_s", "error"]))
        if args.jobs:
            report["side_by_side"] = side_by_side(params, args, Path(tmp))
            print(f"\nside by side: {json.dumps(report['side_by_side'])}")
    if args.json:
        from pipeline.common.outputs import write_json

        write_json(args.json, report)


if __name__ == "__main__":
    cli.run(main)
