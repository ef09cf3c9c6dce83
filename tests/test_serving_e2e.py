"""What `dvc repro` registers (conftest.pipeline_run, fixture data), served by `mlflow models serve`
from a folder without the project, and the predict tool on a model that cannot take its image."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.helpers import VENV_BIN, free_port, http_service, mlflow_client, run, seconds_left
from tests.test_serving_images import declaring

pytestmark = pytest.mark.e2e

NAMES = {"mnist-cnn": ("mnist-k3-s1", "mnist-k3-s1-l2"), "cifar10-gray-cnn": ("cifar10-k3-s1",),
         "cifar10-color-cnn": ("cifar10-k3-s1-rgb",)}
REGISTER = ["-m", "pipeline.register", "--jobs", "jobs", "--metrics", "metrics", "--runs", "runs", "--models", "models",
            "--aggregates", "metrics/aggregates.json", "--out", "registry/champions.json"]


def test_each_datasets_best_setting_on_validation_is_registered_as_smoke(pipeline_run):
    repo, env, _ = pipeline_run
    champions = json.loads((repo / "registry" / "champions.json").read_text())
    aggregates = json.loads((repo / "metrics" / "aggregates.json").read_text())
    assert set(champions) == set(NAMES)
    for name, settings in NAMES.items():
        best = max(settings, key=lambda setting: aggregates[setting]["val_accuracy_mean"])
        assert champions[name]["setting"] == best
        # fixture params train 2 epochs: a smoke run, which never takes `champion`
        assert champions[name]["alias"] == "smoke"
        assert mlflow_client(repo).get_registered_model(name).aliases == {"smoke": champions[name]["version"]}
    again = run([sys.executable, *REGISTER], repo, env=env)
    assert "(new)" not in again.stderr and len(mlflow_client(repo).search_model_versions("name = 'mnist-cnn'")) == 1


def png(array: np.ndarray, size: tuple[int, int] | None = None) -> str:
    """The image as a base64 PNG file (whose header declares `size`, if given)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = declaring(buffer.getvalue(), *size) if size else buffer.getvalue()
    return base64.b64encode(data).decode("ascii")


def post(url: str, images: list[str], params: dict | None = None, column: str = "image") -> tuple[int, dict]:
    body = json.dumps({"dataframe_split": {"columns": [column], "data": [[image] for image in images]},
                       "params": params or {}}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_served_model_answers_as_the_evaluated_one(pipeline_run, tmp_path):
    """A test image of the raw archive, as a PNG, gets the probabilities the evaluate stage computed
    on its prepared array: the served model preprocesses as the training did."""
    repo, env, _ = pipeline_run
    champion = json.loads((repo / "registry" / "champions.json").read_text())["mnist-cnn"]
    with np.load(repo / "data" / "raw" / "mnist.npz") as raw:
        images = raw["x_test"][:3]
    evaluated = np.load(repo / "predictions" / champion["setting"] / f"seed{champion['seed']}.npy")[:3]
    port = free_port()
    serve = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/mnist-cnn@smoke", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port)]
    store = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}"}
    # the fixture's classes are a block's position: no digit to frame (nor to invert, but for the one row)
    rows = [png(image) for image in images] + [png(255 - images[0]), base64.b64encode(b"no image").decode()]
    # from a folder without the project: the model brings its code
    with http_service(serve, port, "mlflow models serve", cwd=tmp_path, timeout=180, env=store) as url:
        status, answer = post(url, rows, {"frame": "no"})
        with ThreadPoolExecutor(2) as pool:  # overlapping requests, one with an image over the pixel cap
            huge, small = pool.map(lambda size: post(url, [png(images[0], size)]), [(8000, 8000), None])
        failures = [post(url, rows[:1], {"invert": "maybe"}), post(url, rows[:1], column="picture")]
    assert status == 200, answer
    rows = answer["predictions"]
    served = np.array([[row["probabilities"][str(digit)] for digit in range(10)] for row in rows[:4]])
    np.testing.assert_allclose(served, np.concatenate([evaluated, evaluated[:1]]), atol=1e-4)
    assert [row["class"] for row in rows[:4]] == [str(i) for i in evaluated.argmax(axis=1)] + [rows[0]["class"]]
    assert [row["notes"] for row in rows[:4]] == [[], [], [], ["inverted: dark on light"]]
    assert rows[4]["class"] is None and rows[4]["error"].startswith("not an image")
    assert huge[0] == small[0] == 200 and "more than 50,000,000 pixels" in huge[1]["predictions"][0]["error"]
    assert small[1]["predictions"][0]["error"] is None
    for (bad_status, bad), reason in zip(failures, ["invert='maybe': give one of auto, yes, no", "image"]):
        assert 400 <= bad_status < 500 and reason in bad["message"], bad
        assert "stack_trace" not in bad and "Traceback" not in bad["message"], bad


def test_predict_says_in_one_line_that_a_color_model_takes_no_gray_image(pipeline_run, tmp_path):
    repo, env, _ = pipeline_run
    image = tmp_path / "gray.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", str(image), "--model",
                             "models:/cifar10-color-cnn@smoke"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=seconds_left(300))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.startswith(f"error: {image}: a gray image;") and result.stderr.count("\n") == 1, result.stderr
