"""The MLflow pyfunc model a registered version is: the trained Keras model with its
preprocessing, so that raw images go in and class probabilities come out.

Input: a DataFrame with one string column `image`, each row a base64-encoded image file (PNG,
JPEG, ...; any size, color or gray). Params (MNIST models): `invert` (auto, yes, no: auto inverts
a dark digit on a light background) and `frame` (auto, no: auto frames the digit as MNIST's were).
Output: per row `class` (the top class's name), `probabilities` ({class name: probability}),
`notes` (what was done to the image beyond the training's preprocessing, in words) and `error`
(why the row has no class: not an image, say; null otherwise). `mlflow models serve` answers a POST
of {"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}, "params": {"invert": "no"}}
with them, each row on its own.

The register stage logs this file as MLflow's models-from-code (no pickled object): loading the
model runs it, and `set_model` below names the model it is.
"""

import base64
import binascii
import json

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipeline.serving import digits
from pipeline.serving.images import ImageRejected, decode, normalize, pixels

CHAMPION, SMOKE = "champion", "smoke"  # a registered version's aliases: the best full-size run, the best smoke run
KERAS_MODEL = "keras_model"  # artifact names: the .keras file and the preprocessing record
PREPROCESSING = "preprocessing"
INPUT_COLUMN = "image"
CHOICES = {"invert": digits.INVERT, "frame": digits.FRAME}  # the params; the first of each is its default
# Images a forward pass takes at most: a request of thousands of rows is answered in passes of this
# many, its activations' memory bounded (as `model.predict`'s batches bound them).
PASS_IMAGES = 128


def signature():
    """Raw image files in, as base64 text (JSON carries no bytes); the inversion and framing
    choices as params (declared, or `mlflow models serve` drops them)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
                          params=ParamSchema([ParamSpec(name, "string", allowed[0])
                                              for name, allowed in CHOICES.items()]))


def encode(images: list[bytes]):
    """Image files as the model's input frame."""
    return pd.DataFrame({INPUT_COLUMN: [base64.b64encode(data).decode("ascii") for data in images]})


def image_bytes(text) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ImageRejected("not base64 text (send each image file base64-encoded)") from None


def choices(record: dict, params: dict | None) -> dict[str, str]:
    """The inversion and framing asked for; a request with a wrong one fails as a whole, saying why."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    chosen = {name: str((params or {}).get(name) or allowed[0]) for name, allowed in CHOICES.items()}
    try:
        digits.check_choices(record, **chosen)
    except digits.ChoiceRejected as exc:
        raise MlflowException(f"params: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
    return chosen


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """A Keras classifier behind its training preprocessing."""

    def load_context(self, context):
        # Keras imports TensorFlow here, in the serving process: quieted as in the stages, so that
        # `mlflow models serve` on a CPU-only machine prints no CUDA probing ("failed call to cuInit").
        from pipeline.model.runtime import load_tensorflow

        load_tensorflow()
        import keras

        with open(context.artifacts[PREPROCESSING], encoding="utf-8") as handle:
            self.record = json.load(handle)
        self.model = keras.saving.load_model(context.artifacts[KERAS_MODEL], compile=False)
        # Keras traces its predict function for the first batch size it sees and, at the second,
        # once more for any size (reduce_retracing): both here, so that no request waits for a trace.
        blank = np.zeros((2, *self.model.input_shape[1:]), np.float32)
        for size in (1, 2):
            self.model.predict_on_batch(blank[:size])

    def probabilities(self, x):
        """The model's class probabilities for a preprocessed batch, a pass of Keras' predict function
        per PASS_IMAGES. Not `model.predict`: its set-up per call (a data adapter, an iterator, a
        step loop) costs ~40 times the model's own work on one image (docs/performance.md)."""
        return np.concatenate([self.model.predict_on_batch(x[start:start + PASS_IMAGES])
                               for start in range(0, len(x), PASS_IMAGES)])

    # The DataFrame hint: MLflow validates the input by the signature, and infers none from the hint.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        chosen = choices(self.record, params)
        rows, good = [], []
        for text in model_input[INPUT_COLUMN]:
            try:
                x, notes = pixels(decode(image_bytes(text)), self.record, **chosen)
            except ImageRejected as exc:  # this row's answer; the others still get theirs
                rows.append({"class": None, "probabilities": None, "notes": [], "error": str(exc)})
                continue
            good.append(x)
            rows.append({"notes": notes, "error": None})
        if good:
            names = self.record["class_names"]
            batch = normalize(np.stack(good), self.record["normalization"])
            answers = iter(np.asarray(self.probabilities(batch), dtype=np.float64))
            for row in rows:
                if row["error"] is None:
                    probabilities = next(answers)
                    row.update({"class": names[int(probabilities.argmax())],
                                "probabilities": dict(zip(names, map(float, probabilities)))})
        # object columns: a row without a class holds None (JSON null), not pandas' NaN
        return pd.DataFrame(rows, columns=["class", "probabilities", "notes", "error"], dtype=object)


mlflow.models.set_model(ImageClassifier())
