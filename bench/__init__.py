"""Benchmarks: scripts that print figures measured on this machine (never tests). Each says more
with --help; docs/performance.md holds what they measured, with machine, date and command.

    python -m bench.training           the train stage's path against plain Keras, and MLflow's share
    python -m bench.options            s/epoch under each precision x XLA x batch size; trainings side by side
    python -m bench.layers             where one CIFAR train step spends its time, layer by layer
    python -m bench.feed               Keras fed arrays against the train stage's feed (tf.data's waits)
    python -m bench.stage_costs        where one setting's `dvc repro` spends its time besides training
    python -m bench.noop_repro         the time of a `dvc repro` with nothing to do
    python -m bench.determinism        what train.deterministic costs, and whether reruns agree
    python -m bench.jpeg_mirror        a mirror whose CIFAR images took one more JPEG pass
    python -m bench.jpeg_sensitivity   what a trained model loses when its test images take a JPEG pass
    python -m bench.gpu_data           the two datasets packed small enough to send to a GPU box
    python -m bench.gpu_sweep          the whole reproduction on a GPU box, any Keras backend
    bash bench/gpu.sh                  the options and side-by-side runs, on a GPU box
    python -m bench.suite_times        the test suite's time per file, from pytest's JUnit report
"""
