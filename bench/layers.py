"""Where one training step of the CIFAR model spends its time, layer by layer.

Each layer is timed alone (forward + backward) on a batch of its input shape.

    python -m bench.layers [--batch-size 128] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import bench_job, first_setting, table
from pipeline.common import cli
from pipeline.params.load import load_params


def layer_profile(params, batch_size: int, repeats: int) -> list[dict]:
    import tensorflow as tf

    from pipeline import train

    job = bench_job(params, first_setting(params, "cifar10"))
    model, _, _ = train.build_compiled(job)
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
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch-size", type=int, help="default: train.batch_size")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    rows = layer_profile(params, args.batch_size or params.train.batch_size, args.repeats)
    print(table(rows, ["layer", "seconds_per_step", "share"]))


if __name__ == "__main__":
    cli.run(main)
