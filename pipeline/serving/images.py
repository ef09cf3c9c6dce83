"""Raw image bytes -> the arrays a model was trained on, by the preprocessing record the
register stage writes beside the model (`preprocessing.json`).

The record, not an import of the preprocess stage, carries the gray weights and the
normalization: the served model loads without the project (tests/test_serving.py holds that
this conversion gives the preprocess stage's arrays).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

# PIL modes of one gray channel: taken as they are (MNIST's digits, a gray photo), not weighted
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class ImageRejected(ValueError):
    """Bytes that are no image, or an image the model's dataset cannot take; the message says which."""


def decode(data: bytes):
    """The image in `data`, fully read (a truncated file fails here, not later)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except UnidentifiedImageError:
        raise ImageRejected("not an image (PIL reads PNG, JPEG, GIF, BMP, TIFF, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"an unreadable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    return image


def pixels(image, record: dict) -> np.ndarray:
    """One decoded image as (side, side, channels) float32, converted as the training data were:
    gray by the record's weights (an image already gray is taken as it is), or its colors."""
    from PIL import Image

    side, color = record["side"], record["color"]
    gray_image = image.mode in GRAY_MODES
    if color == "rgb" and gray_image:
        raise ImageRejected(f"a gray image; this model ({record['dataset']}, in color) was trained on color "
                            "images and cannot take one without colors")
    if gray_image:
        resized = image.convert("L").resize((side, side), Image.BILINEAR)
        return np.asarray(resized, dtype=np.float32)[..., None]
    rgb = np.asarray(image.convert("RGB").resize((side, side), Image.BILINEAR))
    if color == "rgb":
        return rgb.astype(np.float32)
    # as preprocess.to_gray: weighted in float64, stored as float32
    return (rgb.astype(np.float64) @ np.asarray(record["gray_weights"]))[..., None].astype(np.float32)


def normalize(x: np.ndarray, normalization: dict) -> np.ndarray:
    """The training data's normalization: the training split's mean/std, or each image's own."""
    x = x.astype(np.float64)
    if normalization["method"] == "zscore":
        mean, std = np.asarray(normalization["mean"]), np.asarray(normalization["std"])
        return ((x - mean) / std).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def prepare(images: list[bytes], record: dict) -> np.ndarray:
    """Raw image files -> the model's input batch (N, side, side, channels) float32."""
    return normalize(np.stack([pixels(decode(data), record) for data in images]), record["normalization"])
