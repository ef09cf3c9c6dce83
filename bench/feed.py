"""Keras fed NumPy arrays against the train stage's feed (pipeline.training.feed: tf.data, autotuning off):
per epoch, its time and the idle waits around tf.data's iterators, in one run, A B A B.

The waits, from Keras' callback events: before the epoch's first batch (the previous epoch's
training iterator being deleted), between the end of validation and the end of the epoch (the
validation iterator), and from the end of training until `fit` returns (the last one).

    python -m bench.feed --datasets cifar10 --train-samples 9000 --val-samples 0 --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import add_data_arguments, bench_data, bench_job, first_setting, load_arrays, table, timed_fit
from pipeline.common import cli
from pipeline.model.datasets import num_classes
from pipeline.params.load import load_params

FEEDS = ("arrays", "pipeline")


def timed_epochs(model, feed: str, arrays, classes: int, batch_size: int, epochs: int, seed: int) -> list[dict]:
    import keras

    from pipeline.training.feed import array_batches

    x, y, x_val, y_val = arrays
    marks: dict[str, float] = {}
    rows: list[dict] = []

    class Events(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.clear()
            marks["begin"] = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            marks.setdefault("first_batch", time.perf_counter())

        def on_test_end(self, logs=None):
            marks["validated"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            rows.append({"feed": feed, "epoch": epoch + 1, "s_epoch": round(now - marks["begin"], 1),
                         "wait_before_first_batch": round(marks["first_batch"] - marks["begin"], 1),
                         "wait_after_validation": round(now - marks["validated"], 1)})

        def on_train_end(self, logs=None):
            marks["trained"] = time.perf_counter()

    if feed == "arrays":
        timed_fit(model, classes, x, y, x_val, y_val, batch_size, epochs, callbacks=[Events()])
    else:  # as the train stage feeds it (the batches are shuffled already)
        model.fit(array_batches(x, y, batch_size=batch_size, classes=classes, shuffle_seed=seed),
                  validation_data=array_batches(x_val, y_val, batch_size=batch_size, classes=classes),
                  shuffle=False, epochs=epochs, verbose=0, callbacks=[Events()])
    rows[-1]["wait_fit_return"] = round(time.perf_counter() - marks["trained"], 1)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="each feed this many times, alternating")
    args = parser.parse_args(argv)
    from pipeline.model.runtime import device_line, load_tensorflow

    load_tensorflow()
    import keras

    from pipeline.model.network import build_model, compile_model

    params = load_params(args.params)
    print(device_line("float32"), file=sys.stderr)
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.datasets:
            name = first_setting(params, dataset)
            if name is None:
                continue
            source = bench_data(args.data, dataset, args.train_samples, args.val_samples, Path(work) / dataset)
            arrays = load_arrays(Path(work) / dataset)
            job = bench_job(params, name)
            rows = []
            for _ in range(args.rounds):
                for feed in FEEDS:
                    keras.backend.clear_session()
                    keras.utils.set_random_seed(job.seed)
                    model = compile_model(build_model(name, job.setting, job.model), job.train.learning_rate,
                                          job.train.optimizer)
                    rows += timed_epochs(model, feed, arrays, num_classes(dataset), job.train.batch_size,
                                         args.epochs, job.seed)
            print(f"\n{name}: {len(arrays[0])} training, {len(arrays[2])} validation images ({source}), "
                  f"batch {job.train.batch_size}, float32")
            print(table(rows, ["feed", "epoch", "s_epoch", "wait_before_first_batch", "wait_after_validation",
                               "wait_fit_return"]))
            for feed in FEEDS:
                steady = [row["s_epoch"] for row in rows if row["feed"] == feed and row["epoch"] > 1]
                print(f"{feed}: median s/epoch after the first {statistics.median(steady):.1f}, "
                      f"fit returned {sum(row.get('wait_fit_return', 0) for row in rows if row['feed'] == feed):.1f} s "
                      f"after training in all")


if __name__ == "__main__":
    cli.run(main)
