"""The served model as the register stage logs it: the pyfunc model from code, its Keras model and
preprocessing record as artifacts, its requirements and input example, and a digest of the code it
runs (a change of it makes a new version)."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

from pipeline.model.runtime import load_tensorflow
from pipeline.serving import digits, images, pyfunc


def serving_code() -> str:
    """A digest of the code a registered model runs: a change of it makes a new version."""
    digest = hashlib.md5()
    for module in (images, digits, pyfunc):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def input_example(side: int):
    """A blank color image of the dataset's size, as the model's input: MLflow keeps it with the
    model (a request to copy) and tries it on the logged model."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return pyfunc.encode([buffer.getvalue()])


def log_served_model(model_file: Path, record: dict, setting: str, run_id: str, experiment_id: str) -> str:
    """The pyfunc model (the Keras model in `model_file` + the preprocessing `record`) logged from the
    training run `run_id`; its model id."""
    load_tensorflow()  # without its C++ chatter
    import keras
    import mlflow
    import numpy as np
    import PIL
    import tensorflow as tf

    # Not the training run's own model (its source run stays the Keras model's alone: it is found by
    # its run); the version names the run instead.
    logged = mlflow.initialize_logged_model(name="served", experiment_id=experiment_id,
                                            tags={"setting": setting, "training_run": run_id})
    # Stated, not inferred: inference would otherwise re-import the model in a subprocess.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}",
                    f"pillow=={PIL.__version__}", f"mlflow=={mlflow.__version__}"]
    with tempfile.TemporaryDirectory() as tmp:
        record_file = Path(tmp) / "preprocessing.json"
        record_file.write_text(json.dumps(record, indent=2), encoding="utf-8")
        # Models from code (MLflow's recommended way): the model is the pyfunc module's file, run when it loads;
        # the package travels with it, for a place where the project is not on the path.
        mlflow.pyfunc.log_model(name="served", python_model=pyfunc.__file__,
                                artifacts={pyfunc.KERAS_MODEL: str(model_file), pyfunc.PREPROCESSING: str(record_file)},
                                code_paths=[str(Path(pyfunc.__file__).parents[1])],
                                signature=pyfunc.signature(), input_example=input_example(record["side"]),
                                pip_requirements=requirements,
                                model_id=logged.model_id)
    return logged.model_id
