"""The whole reproduction on one GPU box, under whichever Keras backend it has (JAX where
TensorFlow is not installed), without DVC or MLflow: every setting x seed of one or more params
files at their epochs, several trainings side by side on the one GPU, each built, compiled and
fed as the train stage does (pipeline.model.network, the same `fit` arguments, the same precision rule).
Each epoch and each finished run is appended to JSON lines as it happens, so a run cut short still
tells what it reached.

    python -m bench.gpu_sweep pack /work/mirror .gpu    # here: the two datasets, small enough to carry
    python -m bench.gpu_sweep run .gpu OUT params.yaml bench/cifar_gap.yaml@preprocess.normalization=per_image
    python -m bench.gpu_sweep table OUT/runs.jsonl      # test accuracy per variant: mean, std, seeds

A spec is a params file, optionally with `@key=value,...` (dotted keys, YAML values) applied to a
copy of it. A run that two specs share (same values, data and seed) trains once.

The data are packed by bench.gpu_data (grayscale CIFAR-10 rounded to whole grey levels, to fit
the 64 MiB a GPU box is sent).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.gpu_data import pack, unpack_cifar10
from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.job import TrainJob, job_text, load_job
from pipeline.model.datasets import num_classes
from pipeline.params.file import read_yaml
from pipeline.params.load import parse_params
from pipeline.params.schema import Params, resolved


def spec_params(spec: str) -> tuple[str, Params]:
    """`file[@key=value,...]` -> (the spec as written, validated params)."""
    path, _, overrides = spec.partition("@")
    raw = read_yaml(Path(path))
    for assignment in filter(None, re.split(r",(?=[\w.-]+=)", overrides)):  # a comma inside [0, 1] stays
        key, _, value = assignment.partition("=")
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = yaml.safe_load(value)
    return spec, parse_params(raw, path)


def prepared_data(params: Params, dataset: str, packed: Path, work: Path) -> Path:
    """The splits the preprocess stage would write for these params (gray only), once per choice."""
    from pipeline.preprocess import load_mnist, prepare

    config = params.preprocess
    out = work / f"{dataset}-{config.normalization}-{config.val_fraction}-{config.seed}"
    if not (out / "y_test.npy").exists():
        arrays = load_mnist(packed / "mnist.npz") if dataset == "mnist" else unpack_cifar10(packed)
        splits, _ = prepare(*arrays, config)
        out.mkdir(parents=True)
        for name, (x, y) in splits.items():
            np.save(out / f"x_{name}.npy", x)
            np.save(out / f"y_{name}.npy", y)
    return out


def planned_runs(specs: list[str], packed: Path, work: Path) -> list[dict]:
    """One entry per distinct (job, seed), the slowest first so that none starts last: CIFAR-10's
    steps cost most, then more steps (epochs x steps per epoch) cost more."""
    runs: dict[str, dict] = {}
    for spec in specs:
        label, params = spec_params(spec)
        for name in params.settings:
            own, train, model = resolved(params, name)
            if own.color == "rgb":
                print(f"{label}: {name} skipped (the pack holds grayscale CIFAR-10 only)", file=sys.stderr)
                continue
            data = prepared_data(params, own.dataset, packed, work)
            job = TrainJob(name, own, model, train, data, data_md5="packed")
            for seed in params.seeds:
                runs.setdefault(f"{job_text(job)}{seed}", {
                    "spec": label, "setting": name, "seed": seed, "job": job_text(job),
                    "variant": f"{name}, {params.preprocess.normalization}, precision {train.precision}",
                    "cost": (own.dataset == "cifar10",
                             train.epochs * train.subset / train.batch_size * len(np.load(data / "y_train.npy"))),
                })
    return sorted(runs.values(), key=lambda run: run.pop("cost"), reverse=True)


def gpu_capabilities() -> list[tuple[int, int]]:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [tuple(int(part) for part in d.compute_capability.split(".")) for d in jax.devices("gpu")] \
            if any(d.platform == "gpu" for d in jax.devices()) else []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [tuple(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)))
                for g in tf.config.list_physical_devices("GPU")]
    return []


def train_one(job: TrainJob, jit_compile, progress: Path) -> dict:
    """The train stage's model, optimizer, batches and precision rule; each epoch appended to
    `progress`; then the test set's accuracy and predictions."""
    import keras

    from pipeline.model.network import build_model, compile_model
    from pipeline.model.runtime import cpu_flags, resolved_precision
    from pipeline.train import load_split, training_subset

    keras.utils.set_random_seed(job.seed)
    precision = resolved_precision(job.train.precision, cpu_flags(), gpu_capabilities())
    keras.mixed_precision.set_global_policy(precision)
    model = compile_model(build_model(job.name, job.setting, job.model), job.train.learning_rate,
                          job.train.optimizer, jit_compile=jit_compile,
                          steps_per_execution=job.train.steps_per_execution)
    x_train, y_train = load_split(job.data, "train")
    subset = training_subset(len(y_train), job.train.subset, job.seed)
    if subset is not None:
        x_train, y_train = x_train[subset], y_train[subset]
    x_val, y_val = load_split(job.data, "val")
    x_test, y_test = load_split(job.data, "test")
    classes = num_classes(job.dataset)
    seconds: list[float] = []

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)
            row = {"setting": job.name, "seed": job.seed, "epoch": epoch + 1, "seconds": round(seconds[-1], 2),
                   **{k: round(float(v), 5) for k, v in (logs or {}).items()}}
            with progress.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")

    started = time.perf_counter()
    history = model.fit(
        np.asarray(x_train), keras.utils.to_categorical(y_train, classes),
        validation_data=(np.asarray(x_val), keras.utils.to_categorical(y_val, classes)),
        epochs=job.train.epochs, batch_size=job.train.batch_size, shuffle=True,
        callbacks=[keras.callbacks.TerminateOnNaN(), EpochLog()], verbose=0,
    ).history
    predicted = model.predict(np.asarray(x_test), batch_size=1024, verbose=0).argmax(axis=1)
    return {
        "precision": precision, "backend": keras.backend.backend(), "epochs": len(seconds),
        "train_seconds": round(time.perf_counter() - started, 1),
        "seconds_per_epoch": round(statistics.median(seconds[1:] or seconds), 2),
        "train_accuracy": history["accuracy"][-1], "val_accuracy": history["val_accuracy"][-1],
        "test_accuracy": float((predicted == y_test).mean()),
        "test_predictions": "".join(map(str, predicted.tolist())),
    }


def run_all(runs: list[dict], out: Path, jobs: int, jit_compile: str) -> None:
    """Each run in its own process (one Keras/XLA state each), `jobs` at a time; every GPU process
    takes memory as it needs it instead of most of the card."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    started = time.perf_counter()
    done = 0

    def one(run: dict) -> dict:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job_file:
            job_file.write(run["job"])
        command = [sys.executable, "-m", "bench.gpu_sweep", "one", job_file.name, str(run["seed"]),
                   str(out / "epochs.jsonl"), "--jit-compile", jit_compile]
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            return {**run, "error": finished.stderr.strip().splitlines()[-1:] or ["exit " + str(finished.returncode)]}
        return {**run, **json.loads(finished.stdout.strip().splitlines()[-1])}

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for result in (f.result() for f in concurrent.futures.as_completed([pool.submit(one, r) for r in runs])):
            done += 1
            result.pop("job")
            with (out / "runs.jsonl").open("a", encoding="utf-8") as lines:
                lines.write(json.dumps(result) + "\n")
            outcome = result.get("error") or (f"test {result['test_accuracy']:.4f}, "
                                               f"{result['seconds_per_epoch']} s/epoch, {result['precision']}")
            print(f"[{done}/{len(runs)} at {time.perf_counter() - started:.0f} s] {result['variant']} "
                  f"seed {result['seed']}: {outcome}", flush=True)


def variant_table(results: list[dict]) -> str:
    """Test accuracy per variant (setting, normalization, precision): mean and std over its seeds,
    with s/epoch."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        if "error" not in result:
            groups.setdefault(result["variant"], []).append(result)
    lines = ["| variant | computed in | seeds | test accuracy % (mean ± std) | s/epoch |", "|---|---|---|---|---|"]
    for variant, group in sorted(groups.items()):
        accuracies = [100 * r["test_accuracy"] for r in group]
        spread = f" ± {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
        lines.append(f"| {variant} | {group[0]['precision']} | {len(group)} | "
                     f"{statistics.mean(accuracies):.2f}{spread} | "
                     f"{statistics.median(r['seconds_per_epoch'] for r in group)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="write the carried data from an offline mirror")
    packing.add_argument("mirror", type=Path)
    packing.add_argument("packed", type=Path)
    running = commands.add_parser("run", help="train every setting x seed of the specs")
    running.add_argument("packed", type=Path)
    running.add_argument("out", type=Path, help="runs.jsonl (one line per run) and epochs.jsonl go here")
    running.add_argument("specs", nargs="+", help="params file[@key=value,...]")
    running.add_argument("--jobs", type=int, default=8, help="trainings side by side")
    running.add_argument("--jit-compile", default="auto", help="Keras' jit_compile (auto: XLA where it can)")
    single = commands.add_parser("one", help="(internal) one run; prints its result as JSON")
    single.add_argument("job", type=Path)
    single.add_argument("seed", type=int)
    single.add_argument("progress", type=Path)
    single.add_argument("--jit-compile", default="auto")
    summary = commands.add_parser("table", help="the variants' test accuracy from runs.jsonl")
    summary.add_argument("runs", type=Path)
    args = parser.parse_args(argv)

    if args.command == "pack":
        pack(args.mirror, args.packed)
    elif args.command == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            runs = planned_runs(args.specs, args.packed, Path(work))
            print(f"{len(runs)} runs, {args.jobs} side by side", flush=True)
            run_all(runs, args.out, args.jobs, args.jit_compile)
        print(variant_table([json.loads(line) for line in (args.out / "runs.jsonl").read_text().splitlines()]))
    elif args.command == "one":
        jit = {"auto": "auto", "true": True, "false": False}.get(args.jit_compile.lower())
        if jit is None:
            raise PipelineError(f"--jit-compile: auto, true or false (got {args.jit_compile!r})")
        print(json.dumps(train_one(load_job(args.job, args.seed), jit, args.progress)))
    else:
        print(variant_table([json.loads(line) for line in args.runs.read_text(encoding="utf-8").splitlines()]))


if __name__ == "__main__":
    cli.run(main)
