"""Benchmark: the pipeline's training path against plain Keras, on this machine, in one run.

For one setting per dataset it trains the same model at the same batch size twice: with a plain
`model.fit(x, y_onehot)` on in-memory arrays, and through `pipeline.train.fit` (the train
stage's path: params' precision / XLA / steps_per_execution / distribute options, per-epoch
MLflow logging into a throw-away store, backup for resumption). It prints samples/s,
s/epoch, their ratio, the achieved GFLOP/s (FLOPs counted from the layer shapes) and, with
--peak-gflops, the fraction of peak; the share of epoch time spent logging to MLflow; and the
time of a `dvc repro` that has nothing to do. Table on stdout, all figures with --json.

    python -m pipeline.bench                              # prepared data if present, else random
    python -m pipeline.bench --train-samples 0 --epochs 3 --json bench.json   # full splits
    python -m pipeline.bench --profile                    # where a CIFAR train step spends its time

--options runs one setting per dataset under each GPU option (precision x XLA x batch size) and
prints s/epoch for each: the script for a GPU box (bench/gpu.sh runs it).
The first epoch (tracing, warm-up) is never counted: figures are medians over the others.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import cli
from pipeline.config import INPUT_SHAPES, Params, load_params
from pipeline.errors import PipelineError


# The prepared splits' sizes (val_fraction 0.1), for random stand-ins of the whole splits.
FULL_SPLITS = {"mnist": {"train": 54000, "val": 6000}, "cifar10": {"train": 45000, "val": 5000}}


def forward_flops(model) -> int:
    """Multiply-adds x 2 of one image through the conv and dense layers (the rest is small)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            units_in, units_out = layer.kernel.shape
            total += 2 * units_in * units_out
    return int(total)


def epoch_flops(forward: int, train_samples: int, val_samples: int) -> int:
    """Training costs about three forward passes (forward, gradient of inputs and of weights);
    validation one."""
    return 3 * forward * train_samples + forward * val_samples


def steady(seconds: list[float]) -> float:
    """Median epoch time without the first epoch, which traces and warms up."""
    return statistics.median(seconds[1:])


def first_setting(params: Params, dataset: str) -> str | None:
    return next((name for name, s in params.settings.items() if s.dataset == dataset), None)


def bench_data(source: Path, dataset: str, train_samples: int, val_samples: int, out: Path) -> str:
    """Write the splits the benchmark trains on (the prepared ones, cut, or random) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    prepared = source / dataset
    rng = np.random.default_rng(0)
    for split, count in (("train", train_samples), ("val", val_samples)):
        if (prepared / f"x_{split}.npy").exists():
            x = np.load(prepared / f"x_{split}.npy", mmap_mode="r")
            y = np.load(prepared / f"y_{split}.npy")
            count = count or len(x)
            np.save(out / f"x_{split}.npy", np.asarray(x[:count]))
            np.save(out / f"y_{split}.npy", y[:count])
        else:
            count = count or FULL_SPLITS[dataset][split]
            np.save(out / f"x_{split}.npy", rng.standard_normal((count, *INPUT_SHAPES[dataset]), dtype=np.float32))
            np.save(out / f"y_{split}.npy", rng.integers(0, 10, count).astype(np.uint8))
    return "prepared" if (prepared / "x_train.npy").exists() else "random"


def timed_fit(model, x, y, x_val, y_val, batch_size: int, epochs: int) -> list[float]:
    import keras

    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, keras.utils.to_categorical(y, 10), validation_data=(x_val, keras.utils.to_categorical(y_val, 10)),
              batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimer()])
    return seconds


def plain_keras(job, data: Path, epochs: int) -> list[float]:
    """The baseline: the same model, defaults everywhere, numpy arrays straight into fit."""
    import keras

    from pipeline.models import build_model, compile_model

    keras.utils.set_random_seed(job.train.seed)
    keras.mixed_precision.set_global_policy("float32")
    model = compile_model(build_model(job.name, job.setting, job.model), job.train.learning_rate)
    arrays = [np.load(data / f"{k}.npy") for k in ("x_train", "y_train", "x_val", "y_val")]
    return timed_fit(model, *arrays, job.train.batch_size, epochs)


def pipeline_path(job, data: Path, work: Path) -> tuple[list[float], list[float], object]:
    """pipeline.train.fit as the train stage calls it, logging to a store under `work`."""
    import mlflow

    from pipeline import train

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.set_experiment("bench")
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        resume = train.Resume(work / "backup" / job.name, "bench")
        with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines; stdout holds the table
            model, checkpoint, _ = train.fit(job, data, mlflow, run.info.run_id, resume)
        resume.clear()
    return [row["seconds"] for row in checkpoint.rows], checkpoint.logging_seconds, model


def noop_repro_seconds(repo: Path) -> float | str:
    """Median wall time of three `dvc repro` with every stage up to date; or why not measured."""
    dvc = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None or not (repo / "dvc.lock").exists():
        return "not measured: no dvc, or the pipeline never ran here (no dvc.lock)"
    status = subprocess.run([dvc, "status", "--quiet"], cwd=repo, capture_output=True)
    if status.returncode != 0:
        return "not measured: `dvc status` lists changed stages; run `dvc repro` first"
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([dvc, "repro"], cwd=repo, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 2)


def compare(params: Params, args, work: Path) -> list[dict]:
    from pipeline import train

    results = []
    for dataset in args.datasets:
        name = first_setting(params, dataset)
        if name is None:
            continue
        job = train.stage_params(params, name)
        # the benchmark picks the images (--train-samples): no further subset
        job = replace(job, train=replace(job.train, epochs=args.epochs, subset=1.0))
        data = work / "data" / dataset
        source = bench_data(args.data, dataset, args.train_samples, args.val_samples, data)
        n_train, n_val = len(np.load(data / "y_train.npy")), len(np.load(data / "y_val.npy"))
        print(f"{name}: {n_train} train / {n_val} val images ({source}), {args.rounds} x {args.epochs} epochs per path",
              file=sys.stderr, flush=True)
        # Rounds alternate the two paths: on a shared machine the speed drifts (the same
        # epoch measured 10 s and 20 s minutes apart here), and alternation spreads the drift.
        plain_epochs, pipeline_epochs, logging = [], [], []
        for _ in range(args.rounds):
            plain_epochs += plain_keras(job, data, args.epochs)[1:]
            epochs, logged, model = pipeline_path(job, data, work)
            pipeline_epochs += epochs[1:]
            logging += logged[1:]
        baseline, ours = statistics.median(plain_epochs), statistics.median(pipeline_epochs)
        flops = epoch_flops(forward_flops(model), n_train, n_val)
        row = {
            "setting": name, "data": source, "train_samples": n_train, "val_samples": n_val,
            "batch_size": job.train.batch_size, "precision": job.train.precision,
            "jit_compile": job.train.jit_compile, "steps_per_execution": job.train.steps_per_execution,
            "plain_s_per_epoch": round(baseline, 3), "pipeline_s_per_epoch": round(ours, 3),
            "plain_samples_per_s": round(n_train / baseline, 1), "pipeline_samples_per_s": round(n_train / ours, 1),
            "speedup": round(baseline / ours, 3),
            "pipeline_gflops": round(flops / ours / 1e9, 1), "plain_gflops": round(flops / baseline / 1e9, 1),
            "plain_epoch_range_s": [round(min(plain_epochs), 2), round(max(plain_epochs), 2)],
            "pipeline_epoch_range_s": [round(min(pipeline_epochs), 2), round(max(pipeline_epochs), 2)],
            "mlflow_logging_share": round(statistics.median(logging) / (ours + statistics.median(logging)), 5),
        }
        if args.peak_gflops:
            row["pipeline_fraction_of_peak"] = round(row["pipeline_gflops"] / args.peak_gflops, 3)
        results.append(row)
    return results


def run_options(params: Params, args, work: Path) -> list[dict]:
    """s/epoch of one setting per dataset under each precision x XLA x batch size.

    Keras only (no TensorFlow call), so that it runs on whichever Keras backend the GPU box has.
    """
    import keras

    from pipeline import train
    from pipeline.models import build_model, compile_model

    rows = []
    arrays_of: dict[str, list[np.ndarray]] = {}
    grid = itertools.product(args.datasets, args.precisions, args.jit_compile, args.batch_sizes)
    for dataset, precision, jit, batch in grid:
        name = first_setting(params, dataset)
        if name is None:
            continue
        if dataset not in arrays_of:
            data = work / "data" / dataset
            bench_data(args.data, dataset, args.train_samples, args.val_samples, data)
            arrays_of[dataset] = [np.load(data / f"{k}.npy") for k in ("x_train", "y_train", "x_val", "y_val")]
        arrays = arrays_of[dataset]
        job = train.stage_params(params, name)
        row = {"setting": name, "backend": keras.backend.backend(), "precision": precision, "jit_compile": jit,
               "batch_size": batch, "steps_per_execution": args.steps_per_execution}
        try:
            keras.backend.clear_session()
            keras.utils.set_random_seed(job.train.seed)
            keras.mixed_precision.set_global_policy(precision)
            model = compile_model(build_model(name, job.setting, job.model), job.train.learning_rate,
                                  jit_compile=jit, steps_per_execution=args.steps_per_execution)
            seconds = steady(timed_fit(model, *arrays, batch, args.epochs))
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
            sys.executable, "-m", "pipeline.bench", "--options", "--params", str(args.params), "--data", str(args.data),
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


def layer_profile(params: Params, batch_size: int, repeats: int = 10) -> list[dict]:
    """Seconds of one training step (forward + backward) per layer of the CIFAR model, each
    layer timed alone on a batch of its input shape: where the time of a step goes."""
    import keras
    import tensorflow as tf

    from pipeline import train

    job = train.stage_params(params, first_setting(params, "cifar10"))
    model = train.build_compiled(job)
    rows = []
    for layer in model.layers:
        x = tf.random.normal((batch_size, *layer.input.shape[1:]))

        @tf.function
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            return tape.gradient(y, [x, *layer.trainable_weights])

        step(x)
        started = time.perf_counter()
        for _ in range(repeats):
            step(x)
        rows.append({"layer": layer.name, "seconds_per_step": (time.perf_counter() - started) / repeats})
    total = sum(r["seconds_per_step"] for r in rows)
    for row in rows:
        row["share"] = round(row["seconds_per_step"] / total, 3)
        row["seconds_per_step"] = round(row["seconds_per_step"], 5)
    keras.backend.clear_session()
    return rows


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data (one folder per dataset); random images where missing")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=["mnist", "cifar10"])
    parser.add_argument("--train-samples", type=int, default=6400, help="0: the whole training split")
    parser.add_argument("--val-samples", type=int, default=1280, help="0: the whole validation split")
    parser.add_argument("--epochs", type=int, default=3, help="per path and round; the first is not counted")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two paths")
    parser.add_argument("--peak-gflops", type=float, help="the machine's peak, for the fraction of peak")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--profile", action="store_true", help="also time each CIFAR layer's train step")
    parser.add_argument("--options", action="store_true", help="only the precision x XLA x batch grid")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--jit-compile", nargs="+", type=lambda v: v == "true", default=[False, True],
                        metavar="{false,true}")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=0,
                        help="with --options: then this many trainings at once, sharing the device")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        raise PipelineError("--epochs: at least 2 (the first epoch traces and warms up, and is not counted)")
    params = load_params(args.params)
    report: dict[str, object] = {"machine": os.uname().machine, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        if args.options:
            report["options"] = run_options(params, args, Path(tmp))
            print(table(report["options"], ["setting", "backend", "precision", "jit_compile", "batch_size", "s_per_epoch",
                                            "samples_per_s", "error"]))
            if args.jobs:
                report["side_by_side"] = side_by_side(params, args, Path(tmp))
                print(f"\nside by side: {json.dumps(report['side_by_side'])}")
        else:
            report["training"] = compare(params, args, Path(tmp))
            print(table(report["training"], ["setting", "data", "train_samples", "batch_size", "plain_s_per_epoch",
                                             "pipeline_s_per_epoch", "plain_samples_per_s", "pipeline_samples_per_s",
                                             "speedup", "plain_epoch_range_s", "pipeline_epoch_range_s", "pipeline_gflops",
                                             *(["pipeline_fraction_of_peak"] if args.peak_gflops else []),
                                             "mlflow_logging_share"]))
            report["noop_dvc_repro_seconds"] = noop_repro_seconds(Path.cwd())
            print(f"\nno-op `dvc repro` (s): {report['noop_dvc_repro_seconds']}")
            if args.profile:
                report["cifar_layer_profile"] = layer_profile(params, params.train.batch_size)
                print("\n" + table(report["cifar_layer_profile"], ["layer", "seconds_per_step", "share"]))
    if args.json:
        from pipeline.outputs import write_json

        write_json(args.json, report)


if __name__ == "__main__":
    cli.run(main)
