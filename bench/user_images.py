"""How the registered MNIST model does on digits saved as people save them: the same MNIST test
digits written as image files in several renderings, each folder given to `python -m pipeline.predict`
and, in one request per rendering, to the model served by `mlflow models serve`.

    python -m bench.user_images data/raw/mnist.npz --model models:/mnist-cnn@smoke --count 30

Run in a project after `dvc repro` (or `make quick`) registered the model. Prints a Markdown table:
per rendering, how many of the digits predict and the served model classify right.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from pipeline.common import cli
from pipeline.common.errors import PipelineError

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW_TO_VIEW = 6  # EXIF: the stored picture is turned; a viewer turns it 90° clockwise


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def renderings(digit: np.ndarray) -> dict[str, bytes]:
    """One 28x28 white-on-black uint8 MNIST digit as image files of each kind."""
    from PIL import Image

    dark_on_light = 255 - digit
    transparent = np.zeros((28, 28, 4), np.uint8)
    transparent[..., 3] = digit  # black strokes, the background transparent
    phone = Image.fromarray(np.repeat(dark_on_light[..., None], 3, axis=2)).resize((112, 112), Image.BICUBIC)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW_TO_VIEW
    photo = io.BytesIO()
    phone.transpose(Image.Transpose.ROTATE_90).save(photo, format="JPEG", quality=90, exif=exif)
    canvas = np.full((280, 280), 255, np.uint8)  # a paint program's white canvas, the digit small and low left
    small = np.asarray(Image.fromarray(dark_on_light).resize((56, 56), Image.BICUBIC))
    canvas[190:246, 30:86] = small
    return {
        "white on black, 8-bit gray (as MNIST)": _png(Image.fromarray(digit)),
        "dark on light, 8-bit gray": _png(Image.fromarray(dark_on_light)),
        "black strokes on transparent (RGBA)": _png(Image.fromarray(transparent, "RGBA")),
        "white on black, 16-bit gray": _png(Image.fromarray(digit.astype(np.uint16) * 257)),
        "phone photo: EXIF-rotated JPEG, dark on light RGB, 112x112": photo.getvalue(),
        "small and off-centre on a 280x280 white canvas": _png(Image.fromarray(canvas)),
    }


def suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def predicted_by_predict(folder: Path, model: str) -> dict[str, str]:
    """File name -> the class `python -m pipeline.predict` puts first."""
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", str(folder), "--model", model],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"predict failed: {result.stderr[-2000:]}")
    return {Path(path).name: first for path, first in re.findall(r"^(.*): (\S+) [\d.]+%", result.stdout, re.M)}


def served(model: str, port: int, workers: int = 1):
    """`mlflow models serve` of the model on 127.0.0.1:`port`, once it answers (stop it by its process group)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")}
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", model, "--env-manager", "local", "-h", "127.0.0.1",
                               "-p", str(port), "--workers", str(workers)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise PipelineError("mlflow models serve did not answer") from None
            time.sleep(1)


def predicted_by_server(port: int, files: list[bytes]) -> list[str | None]:
    rows = [[base64.b64encode(data).decode()] for data in files]
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return [row["class"] for row in json.load(answer)["predictions"]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.user_images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist", type=Path, help="Keras' mnist.npz (the download stage's data/raw/mnist.npz)")
    parser.add_argument("--model", default="models:/mnist-cnn@champion", help="the registered model")
    parser.add_argument("--count", type=int, default=30, help="test digits, the first ones of the test split")
    parser.add_argument("--port", type=int, default=5077, help="for mlflow models serve")
    args = parser.parse_args(argv)
    with np.load(args.mnist) as data:
        digits, labels = data["x_test"][:args.count], data["y_test"][:args.count]
    by_kind: dict[str, list[bytes]] = {}
    for digit in digits:
        for kind, data in renderings(digit).items():
            by_kind.setdefault(kind, []).append(data)
    server = served(args.model, args.port)
    try:
        print(f"{args.count} MNIST test digits (the first of the test split), {args.model}\n")
        print("| rendering | predict: right | served model: right |\n|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for index, (kind, files) in enumerate(by_kind.items()):
                folder = Path(tmp) / str(index)
                folder.mkdir()
                names = [f"{number:03d}{suffix(data)}" for number, data in enumerate(files)]
                for name, data in zip(names, files):
                    (folder / name).write_bytes(data)
                by_predict = predicted_by_predict(folder, args.model)
                predict_right = sum(by_predict.get(name) == str(y) for name, y in zip(names, labels))
                server_right = sum(c == str(y) for c, y in zip(predicted_by_server(args.port, files), labels))
                print(f"| {kind} | {predict_right}/{len(files)} | {server_right}/{len(files)} |", flush=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait()


if __name__ == "__main__":
    cli.run(main)
