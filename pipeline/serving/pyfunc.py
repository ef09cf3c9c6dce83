"""The MLflow pyfunc model a registered version is: the trained Keras model with its
preprocessing, so that raw images go in and class probabilities come out.

Input: a DataFrame with one string column `image`, each row a base64-encoded image file (PNG,
JPEG, ...; any size, color or gray). Output: per row `class` (the top class's name) and
`probabilities` ({class name: probability}). `mlflow models serve` answers a POST of
{"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}} with them.
"""

import base64
import binascii
import json

import mlflow.pyfunc
import pandas as pd

from pipeline.serving.images import ImageRejected, prepare

KERAS_MODEL = "keras_model"  # artifact names: the .keras file and the preprocessing record
PREPROCESSING = "preprocessing"
INPUT_COLUMN = "image"


def signature():
    """Raw image files in, as base64 text (JSON carries no bytes)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]))


def encode(images: list[bytes]):
    """Image files as the model's input frame."""
    return pd.DataFrame({INPUT_COLUMN: [base64.b64encode(data).decode("ascii") for data in images]})


def decode_rows(frame) -> list[bytes]:
    rows = []
    for number, text in enumerate(frame[INPUT_COLUMN], start=1):
        try:
            rows.append(base64.b64decode(text, validate=True))
        except (binascii.Error, TypeError, ValueError):
            raise ImageRejected(f"row {number}: not base64 text (send each image file base64-encoded)") from None
    return rows


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """A Keras classifier behind its training preprocessing."""

    def load_context(self, context):
        import keras

        with open(context.artifacts[PREPROCESSING], encoding="utf-8") as handle:
            self.record = json.load(handle)
        self.model = keras.saving.load_model(context.artifacts[KERAS_MODEL], compile=False)

    def probabilities(self, x):
        """The model's class probabilities for a preprocessed batch."""
        return self.model.predict(x, verbose=0)

    # The DataFrame hint: MLflow validates the input by the signature, and infers none from the hint.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import numpy as np

        images = decode_rows(model_input)
        probabilities = np.asarray(self.probabilities(prepare(images, self.record)), dtype=np.float64)
        names = self.record["class_names"]
        return pd.DataFrame({
            "class": [names[i] for i in probabilities.argmax(axis=1)],
            "probabilities": [dict(zip(names, map(float, row))) for row in probabilities],
        })
