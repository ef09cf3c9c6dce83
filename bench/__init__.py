"""Benchmarks: scripts that print figures measured on this machine (never tests).

    python -m bench.training      the train stage's path against plain Keras, and MLflow's share
    python -m bench.options       s/epoch under each precision x XLA x batch size; trainings side by side
    python -m bench.layers        where one CIFAR train step spends its time, layer by layer
    python -m bench.noop_repro    the time of a `dvc repro` with nothing to do
    python -m bench.determinism   what train.deterministic costs, and whether reruns agree
    bash bench/gpu.sh             the options and side-by-side runs, on a GPU box
"""
