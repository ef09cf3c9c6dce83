"""How much a trained grayscale-CIFAR model loses when its test images pass through JPEG once
more, at several qualities: how sensitive it is to what the offline mirror's JPEG decoding took
away. (The mirror was decoded from a JPEG copy of CIFAR-10 made with libjpeg's quality-75 tables;
one more pass at 75 is then nearly lossless, so the lower qualities show the slope.)

    python -m bench.jpeg_sensitivity jobs/cifar10-k3-s1.json MODEL data/raw/cifar-10-python.tar.gz

MODEL: the train stage's .keras file, or the weights a running or interrupted training saved
(.dvc/tmp/train-backup/<setting>/seed<k>/keras/latest.weights.h5). Prints test accuracy on the
prepared test set and on the test images re-encoded at a few JPEG qualities, normalized as the
prepared ones were.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from pipeline.common import cli

QUALITIES = (90, 75, 50, 25)


def reencoded(images: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 images (N, H, W, 3) after one more JPEG encode/decode at `quality`."""
    from PIL import Image

    out = np.empty_like(images)
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jpeg_sensitivity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", type=Path, help="the setting's job file (a gray CIFAR-10 setting)")
    parser.add_argument("model", type=Path, help=".keras model, or a .weights.h5 file of that setting's model")
    parser.add_argument("archive", type=Path, help="cifar-10-python.tar.gz as the download stage wrote it")
    args = parser.parse_args(argv)

    from pipeline.job import load_job
    from pipeline.model.runtime import load_tensorflow
    from pipeline.preprocess import load_cifar10, read_normalization, standardize, to_gray

    job = load_job(args.job, 0)
    load_tensorflow()
    import keras

    if args.model.name.endswith(".weights.h5"):
        from pipeline.model.network import build_model

        model = build_model(job.name, job.setting, job.model)
        model.load_weights(args.model)
    else:
        model = keras.models.load_model(args.model)
    stats = read_normalization(job.data)
    _, _, x_test, y_test = load_cifar10(args.archive)

    def accuracy(images: np.ndarray) -> float:
        predicted = model.predict(images, batch_size=500, verbose=0).argmax(axis=1)
        return float((predicted == y_test).mean())

    prepared = accuracy(np.load(job.data / "x_test.npy"))
    print(f"{job.name}: test accuracy {prepared:.2%} on the prepared test set")
    for quality in QUALITIES:
        score = accuracy(standardize(to_gray(reencoded(x_test, quality)), stats))
        print(f"  after one more JPEG pass at quality {quality}: {score:.2%} ({(score - prepared) * 100:+.2f} pp)")


if __name__ == "__main__":
    cli.run(main)
