"""Framing digits whose strokes reach the image's edges: MNIST test digits made into images as a
low-resolution scan or a thick brush makes them, each put through the registered model's
preprocessing framed and unframed (its `frame` param: auto, no): how close the 28x28 digit that
comes out is to the original (their correlation, mean over the digits), and how many the model
classifies right.

    python -m bench.framing data/raw/mnist.npz --model models:/mnist-cnn@smoke --count 200

Run in a project after `dvc repro` (or `make quick`) registered the model. Prints a Markdown table,
one row per kind of image.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import table
from pipeline.common import cli


def inked(digit: np.ndarray) -> np.ndarray:
    """The digit cropped to its ink (white on black): its strokes touch all four edges."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def squared(digit: np.ndarray) -> np.ndarray:
    """The digit cropped to a square around its ink, the ink centred in it."""
    ink = inked(digit)
    height, width = ink.shape
    side = max(height, width)
    out = np.zeros((side, side), digit.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    out[top:top + height, left:left + width] = ink
    return out


def low_resolution(digit: np.ndarray, side: int, enlarged: int) -> np.ndarray:
    """The image as a coarse scan shows it: reduced to `side` pixels on its longer side (area
    averages), then enlarged to `enlarged` (bicubic), as a viewer upscales it."""
    from PIL import Image

    height, width = digit.shape
    scale = side / max(height, width)
    small = Image.fromarray(digit).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BOX)
    grow = enlarged / side
    return np.asarray(small.resize((round(small.width * grow), round(small.height * grow)), Image.BICUBIC))


def thicker(digit: np.ndarray, size: int) -> np.ndarray:
    """The digit drawn with a thicker pen: each pixel the brightest of the size x size around it."""
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(digit).filter(ImageFilter.MaxFilter(size)))


# Each kind of image, made from a 28x28 white-on-black uint8 digit.
KINDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "low resolution: squared to its ink, 8x8, enlarged to 112, dark on light":
        lambda digit: 255 - low_resolution(squared(digit), 8, 112),
    "thick strokes touching all four edges, 10 px, enlarged x11, dark on light":
        lambda digit: 255 - low_resolution(inked(thicker(digit, 5)), 10, 110),
    "thick strokes touching all four edges, 10 px, enlarged x11, light on dark":
        lambda digit: low_resolution(inked(thicker(digit, 5)), 10, 110),
    "drawn thicker (3x3 dilation), cropped to its ink":
        lambda digit: inked(thicker(digit, 3)),
    "MNIST's own, as it is": lambda digit: digit,
}


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.framing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist", type=Path, help="Keras' mnist.npz (the download stage's data/raw/mnist.npz)")
    parser.add_argument("--model", default="models:/mnist-cnn@champion", help="the registered model")
    parser.add_argument("--count", type=int, default=200, help="test digits, the first ones of the test split")
    args = parser.parse_args(argv)
    with np.load(args.mnist) as data:
        digits, labels = data["x_test"][:args.count], data["y_test"][:args.count]

    import mlflow

    from pipeline.model.runtime import load_tensorflow
    from pipeline.serving.images import decode, pixels
    from pipeline.serving.pyfunc import encode
    from pipeline.tracking import store as tracking

    load_tensorflow()
    tracking.quiet_mlflow()
    tracking.connect(tracking.project_root())
    model = mlflow.pyfunc.load_model(args.model)
    record = model.unwrap_python_model().record
    rows = []
    for kind, make in KINDS.items():
        files = [png(make(digit)) for digit in digits]
        row = {"images": kind}
        for frame in ("auto", "no"):
            made = [pixels(decode(data), record, frame=frame)[0][..., 0] for data in files]
            row[f"correlation, frame {frame}"] = f"{np.mean([correlation(x, d) for x, d in zip(made, digits)]):.3f}"
            classes = model.predict(encode(files), params={"frame": frame})["class"]
            row[f"right, frame {frame}"] = f"{sum(c == str(y) for c, y in zip(classes, labels))}/{len(files)}"
        rows.append(row)
        print(row, flush=True)
    print(f"\n{args.count} MNIST test digits (the first of the test split), {args.model}\n")
    print(table(rows, ["images", "correlation, frame auto", "correlation, frame no", "right, frame auto",
                       "right, frame no"]))


if __name__ == "__main__":
    cli.run(main)
