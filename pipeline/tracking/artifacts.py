"""What a training run logs to MLflow besides its metrics: its data, as inputs, and its model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def log_data_inputs(mlflow, dataset: str, data: Path, arrays) -> None:
    """Record the training and validation data of `dataset`, prepared in `data` (MLflow digests
    the first rows of each)."""
    x_train, y_train, x_val, y_val = arrays
    for context, split, x, y in (("training", "train", x_train, y_train), ("validation", "val", x_val, y_val)):
        with warnings.catch_warnings():
            # a local path matches two registered local source types; either one is right
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            logged = mlflow.data.from_numpy(
                np.asarray(x), targets=y, name=f"{dataset}-{split}", source=str(data / f"x_{split}.npy")
            )
        mlflow.log_input(logged, context=context)


def log_model(mlflow, model, name: str, x_example: np.ndarray, run_id: str, experiment_id: str) -> None:
    """The trained model as the run's logged model, called `name` (the UI's Models list shows
    logged models by name); one an earlier attempt of the run left (a kill during its upload, say)
    is deleted first."""
    from mlflow.models import infer_signature

    for earlier in mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list",
                                               filter_string=f"source_run_id = '{run_id}'"):
        mlflow.MlflowClient().delete_logged_model(earlier.model_id)

    example = np.asarray(x_example[:2], dtype=np.float32)
    signature = infer_signature(example, model.predict_on_batch(example))  # two images: one pass, no `predict` set-up
    # mlflow.keras.log_model fails when given an input example (MLflow 3.17: it writes
    # input_example.json before creating the model directory, mlflow/mlflow#16183). The
    # TensorFlow flavor logs the same Keras 3 model (.keras) with signature and example, and
    # mlflow.pyfunc.load_model loads it.
    import keras
    import tensorflow as tf

    # Stated, not inferred: inference re-imports the model in a subprocess (~10 s a run).
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]
    keras.utils.disable_interactive_logging()  # MLflow predicts on the example: no progress bars
    try:
        mlflow.tensorflow.log_model(model, name=name, signature=signature, input_example=example,
                                    pip_requirements=requirements)
    finally:
        keras.utils.enable_interactive_logging()
