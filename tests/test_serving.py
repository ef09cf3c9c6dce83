"""The register stage's choice and its registry versions, the served model's preprocessing and
probabilities, and the predict tool's answers, on synthetic results, images and a tiny model
(no pipeline run: tests/test_serving_e2e.py serves what `dvc repro` registered)."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pipeline import predict, preprocess, register
from pipeline.job import TrainJob
from pipeline.params.schema import MnistModelConfig, Setting, TrainConfig
from pipeline.serving import images, pyfunc
from pipeline.tracking import store as tracking
from tests.helpers import assert_one_line_naming, run_stage
from tests.test_serving_images import DIGIT, file_bytes, seven


def candidate(setting, val, test, smoke=False, registered="mnist-cnn", seeds=None):
    return register.Candidate(setting, registered, seeds or {0: val}, val, test, smoke)


def test_the_winner_is_chosen_on_validation_not_test_accuracy():
    by_val, by_test = candidate("a", 0.99, 0.90), candidate("b", 0.95, 0.97)
    assert register.winners([by_test, by_val]) == {"mnist-cnn": (by_val, "champion")}


def test_a_smoke_run_never_takes_champion():
    full, smoke = candidate("full", 0.90, 0.90), candidate("quick", 0.99, 0.99, smoke=True)
    assert register.winners([smoke, full]) == {"mnist-cnn": (full, "champion")}
    assert register.winners([smoke]) == {"mnist-cnn": (smoke, "smoke")}


def test_each_registered_model_has_its_own_winner_and_the_best_seed_is_registered():
    gray = candidate("g", 0.6, 0.6, registered="cifar10-gray-cnn")
    color = candidate("c", 0.7, 0.7, registered="cifar10-color-cnn", seeds={0: 0.68, 1: 0.72})
    assert register.winners([gray, color]) == {"cifar10-gray-cnn": (gray, "champion"),
                                               "cifar10-color-cnn": (color, "champion")}
    assert color.best_seed == 1
    assert [register.registered_name(*key) for key in (("mnist", "gray"), ("cifar10", "gray"), ("cifar10", "rgb"))] \
        == ["mnist-cnn", "cifar10-gray-cnn", "cifar10-color-cnn"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def prepare(files: list[bytes], record: dict) -> np.ndarray:
    """The model's input batch, as the served model makes it from images in the dataset's
    convention (noise is no digit to invert or frame)."""
    arrays = [images.pixels(images.decode(data), record, invert="no", frame="no")[0] for data in files]
    return images.normalize(np.stack(arrays), record["normalization"])


def record(dataset, color, normalization):
    return {"dataset": dataset, "color": color, "side": 28 if dataset == "mnist" else 32,
            "gray_weights": list(preprocess.GRAY_WEIGHTS), "normalization": normalization,
            "class_names": [str(i) for i in range(10)]}


@pytest.mark.parametrize("method", ["zscore", "per_image"])
@pytest.mark.parametrize("dataset,color", [("mnist", "gray"), ("cifar10", "gray"), ("cifar10", "rgb")])
def test_image_files_become_the_preprocess_stages_arrays(dataset, color, method):
    rng = np.random.default_rng(0)
    side, channels = (28, 1) if dataset == "mnist" else (32, 3)
    raw = rng.integers(0, 256, (3, side, side, channels), dtype=np.uint8)
    source = preprocess.to_gray(raw) if (dataset, color) == ("cifar10", "gray") else raw
    if method == "zscore":
        stats = preprocess.zscore_stats(source.astype(np.float32) + 7)  # not the images' own: a shift shows
        normalization = {"method": "zscore", "source": "training split", **stats}
        expected = preprocess.standardize(source, normalization)
    else:
        normalization = {"method": "per_image"}
        expected = preprocess.standardize_per_image(source)
    got = prepare([png(image) for image in raw], record(dataset, color, normalization))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_any_size_is_resized_to_the_datasets():
    x = prepare([png(np.zeros((50, 70, 3), np.uint8))], record("mnist", "gray", {"method": "per_image"}))
    assert x.shape == (1, 28, 28, 1)


def test_what_is_no_image_or_not_for_the_model_is_rejected():
    with pytest.raises(images.ImageRejected, match="not an image"):
        images.decode(b"hello")
    with pytest.raises(images.ImageRejected, match="unreadable image"):
        images.decode(png(np.zeros((40, 40, 3), np.uint8))[:60])
    gray = images.decode(png(np.zeros((32, 32, 1), np.uint8)))
    with pytest.raises(images.ImageRejected, match="a gray image"):
        images.pixels(gray, record("cifar10", "rgb", {"method": "per_image"}))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return path


def load_served(tiny_model: Path, folder: Path, normalization: dict) -> pyfunc.ImageClassifier:
    (folder / "record.json").write_text(json.dumps(record("mnist", "gray", normalization)))
    served = pyfunc.ImageClassifier()
    served.load_context(SimpleNamespace(artifacts={pyfunc.KERAS_MODEL: str(tiny_model),
                                                   pyfunc.PREPROCESSING: str(folder / "record.json")}))
    return served


def test_the_pyfunc_gives_the_keras_models_probabilities(tiny_model, tmp_path):
    """Files as people send them (PNG and JPEG, dark on light or not, a 7 anywhere on a canvas of any
    size), more than one pass of the model holds: each row gets what Keras' `predict` gives its image."""
    import keras

    normalization = {"method": "zscore", "source": "training split", "mean": 33.3, "std": 78.5}
    served = load_served(tiny_model, tmp_path, normalization)
    rng = np.random.default_rng(1)
    files = []
    for index in range(pyfunc.PASS_IMAGES + 3):  # the last pass partial
        width, height = rng.integers(40, 120, 2)
        drawn = seven((int(width), int(height)), int(rng.integers(0, height // 3)), int(rng.integers(0, width // 3)),
                      int(rng.integers(15, min(width, height) * 2 // 3)))
        drawn = 255 - drawn if index % 2 else drawn
        files.append(file_bytes(Image.fromarray(drawn), "JPEG" if index % 3 else "PNG"))
    answer = served.predict(None, pyfunc.encode(files))
    x = np.stack([images.pixels(images.decode(data), served.record)[0] for data in files])
    expected = keras.saving.load_model(tiny_model).predict(images.normalize(x, normalization), verbose=0)
    got = np.array([[row[name] for name in map(str, range(10))] for row in answer["probabilities"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert list(answer["class"]) == [str(i) for i in expected.argmax(axis=1)]


def test_no_request_waits_for_keras_to_trace_its_predict_function(tiny_model, tmp_path):
    served = load_served(tiny_model, tmp_path, {"method": "per_image"})
    traced = served.model.predict_function.experimental_get_tracing_count()
    for count in (1, 3, 2, 5):
        served.predict(None, pyfunc.encode([png(DIGIT[..., None])] * count))
    assert served.model.predict_function.experimental_get_tracing_count() == traced


def test_the_served_model_answers_each_row_on_its_own(tiny_model, tmp_path):
    from mlflow.exceptions import MlflowException

    served = load_served(tiny_model, tmp_path, {"method": "per_image"})
    rows = pyfunc.encode([png(DIGIT[..., None]), b"hello", png(255 - DIGIT[..., None])])
    rows.loc[3] = ["%% not base64"]
    answer = served.predict(None, rows).to_dict("records")
    x = preprocess.standardize_per_image(DIGIT[None, ..., None])
    expected = served.model.predict(x, verbose=0)[0]
    good, no_image, inverted, no_text = answer
    assert good["error"] is None and good["notes"] == [] and good["class"] == str(expected.argmax())
    np.testing.assert_allclose([good["probabilities"][str(i)] for i in range(10)], expected, rtol=1e-5)
    assert inverted["class"] == good["class"] and inverted["notes"] == ["inverted: dark on light"]
    assert no_image["class"] is None and no_image["error"].startswith("not an image")
    assert no_text["class"] is None and no_text["error"].startswith("not base64 text")
    with pytest.raises(MlflowException, match="params: invert='maybe': give one of auto, yes, no"):
        served.predict(None, rows, {"invert": "maybe"})


@pytest.fixture(scope="module")
def registry(tiny_model, tmp_path_factory, request):
    """A store of its own with two MNIST training runs (a, b) of the tiny model, and the register
    step's inputs for them."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)
    request.addfinalizer(lambda: mlflow.set_tracking_uri(""))  # back to the environment's (predict sets it)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'store.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'store.db'}")
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("mnist-cnn", artifact_location=(root / "artifacts").as_uri())
    data = root / "data"
    data.mkdir()
    (data / "normalization.json").write_text(json.dumps({"method": "per_image"}))
    train = TrainConfig(epochs=50, batch_size=128, learning_rate=0.001, optimizer="adam", deterministic=False,
                        precision="float32", jit_compile=False, steps_per_execution=1, distribute="none", subset=1.0)
    jobs = {}
    for setting in ("a", "b"):
        run = client.create_run(experiment, run_name=setting)
        client.set_terminated(run.info.run_id)
        (root / "runs" / setting).mkdir(parents=True)
        (root / "runs" / setting / "seed0.json").write_text(json.dumps({"run_id": run.info.run_id,
                                                                          "experiment": "mnist-cnn"}))
        (root / "models" / setting).mkdir(parents=True)
        (root / "models" / setting / "seed0.keras").write_bytes(tiny_model.read_bytes())
        jobs[setting] = TrainJob(setting, Setting("mnist", 3, 1, 0.0), MnistModelConfig(256), train, data, "0" * 32)
    args = Namespace(runs=root / "runs", models=root / "models")
    return client, jobs, args


REGISTERED_BY = {"register.git_commit": "abc"}  # the register stage's own provenance tags (a few)


def champion_a(registry) -> None:
    """Setting a as mnist-cnn's champion (a new version, or the one that holds it)."""
    client, jobs, args = registry
    register.register(client, candidate("a", 0.9, 0.8), "champion", jobs["a"], args, "code1", REGISTERED_BY)


def test_a_new_winner_moves_the_alias_and_a_rerun_makes_no_new_version(registry, capfd, recwarn):
    client, jobs, args = registry
    tracking.quiet_mlflow()  # as register's main does
    # a registered model that no other test here registers: its versions count from 1 in any test order
    name = "cifar10-gray-cnn"

    def run(setting, alias="champion"):
        created, entry = register.register(client, candidate(setting, 0.9, 0.8, smoke=alias == "smoke",
                                                             registered=name), alias,
                                           jobs[setting], args, "code1", REGISTERED_BY)
        return created, entry["version"]

    def champion():
        return int(client.get_model_version_by_alias(name, "champion").version)

    assert run("a") == (True, 1) and champion() == 1
    # a quiet log: no CloudPickle or missing input example warning, no progress bars, no INFO lines
    said = capfd.readouterr().err + "".join(str(warning.message) for warning in recwarn)
    assert not [word for word in ("CloudPickle", "input example", "Downloading", " INFO ") if word in said], said
    assert run("a") == (False, 1)
    assert run("b") == (True, 2) and champion() == 2
    assert run("a") == (False, 1) and champion() == 1
    run("b", "smoke")
    assert champion() == 1 and int(client.get_model_version_by_alias(name, "smoke").version) == 2
    version = client.get_model_version(name, "1")
    assert version.tags["setting"] == "a" and version.tags["val_accuracy_mean"] == "0.900000"
    run_id = json.loads((args.runs / "a" / "seed0.json").read_text())["run_id"]
    assert version.run_id == version.tags["run_id"] == run_id
    # the training run's logged models stay its Keras model alone (none here): the served one is apart
    assert not client.search_logged_models([client.get_run(run_id).info.experiment_id],
                                           filter_string=f"source_run_id = '{run_id}'")
    assert {"register.git_commit", "data_md5", "params", "seeds", "test_accuracy_mean"} <= set(version.tags)
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def top_3(tiny_model: Path, pixels: np.ndarray) -> str:
    """The registry's model's three most probable classes for these 28x28 pixels, most probable first,
    as predict prints them: the Keras model's own predict (the registry's data: per-image z-scores)."""
    import keras

    standardized = preprocess.standardize_per_image(pixels[None, ..., None])
    probabilities = keras.saving.load_model(tiny_model).predict(standardized, verbose=0)[0]
    return ", ".join(f"{k} {probabilities[k]:.1%}" for k in np.argsort(-probabilities, kind="stable")[:3])


def test_predict_prints_the_top_3_of_each_image_of_a_folder_and_skips_what_is_none(registry, tiny_model, tmp_path,
                                                                                      capsys):
    champion_a(registry)
    capsys.readouterr()  # what registering said, in the test's setting up
    (tmp_path / "one.png").write_bytes(png(255 - DIGIT[..., None]))
    (tmp_path / "notes.txt").write_text("no image")
    (tmp_path / "two.jpg").write_bytes(png(np.full((60, 40, 3), 200, np.uint8)))
    (tmp_path / ".hidden").write_text("left out")
    with pytest.raises(SystemExit) as status:
        predict.main([str(tmp_path), "--model", "mnist-cnn"])
    out, err = capsys.readouterr()
    assert status.value.code == 1
    assert err == f"error: {tmp_path / 'notes.txt'}: not an image (PIL reads PNG, JPEG, GIF, BMP, TIFF, WebP, ...)\n"
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "one.png"), str(tmp_path / "two.jpg")]
    # one.png reaches the model as the white-on-black DIGIT, already in MNIST's framing
    assert lines[0] == f"{tmp_path / 'one.png'}: {top_3(tiny_model, DIGIT)} (inverted: dark on light)"
    predict.main([str(tmp_path / "two.jpg"), "--model", "mnist-cnn", "--invert", "no", "--frame", "no"])
    flat = np.full((28, 28), 200, np.uint8)  # a uniform picture, as it is
    assert capsys.readouterr().out == f"{tmp_path / 'two.jpg'}: {top_3(tiny_model, flat)}\n"


def test_predict_takes_the_smoke_model_where_there_is_no_champion(registry, tmp_path, capsys):
    client = registry[0]
    champion_a(registry)
    version = client.get_model_version_by_alias("mnist-cnn", "champion").version
    client.set_registered_model_alias("mnist-cnn", "smoke", version)
    client.delete_registered_model_alias("mnist-cnn", "champion")
    (tmp_path / "one.png").write_bytes(png(DIGIT[..., None]))
    capsys.readouterr()  # what registering said, in the test's setting up
    try:
        predict.main([str(tmp_path / "one.png")])
        out, err = capsys.readouterr()
    finally:
        champion_a(registry)
    assert err == ("models:/mnist-cnn@champion: none yet (a full-size run registers it); using mnist-cnn@smoke, "
                   "the smoke run's\n")
    assert out.startswith(f"{tmp_path / 'one.png'}: ")


@pytest.mark.parametrize("kind", ["not an image", "missing", "unknown model", "unknown alias"])
def test_bad_input_gets_one_line(registry, tmp_path, kind):
    champion_a(registry)
    image = tmp_path / "x.png"
    image.write_bytes(b"not a png" if kind == "not an image" else png(np.zeros((28, 28, 1), np.uint8)))
    model = {"unknown model": "models:/nope@champion", "unknown alias": "models:/mnist-cnn@gold"}.get(kind, "mnist-cnn")
    target = tmp_path / "gone.png" if kind == "missing" else image
    status, stderr = run_stage(predict.main, [str(target), "--model", model])
    assert_one_line_naming(model if "unknown" in kind else target, status, stderr)
    expected = {"not an image": "not an image", "missing": "cannot read it",
                "unknown model": "no registered model nope",
                "unknown alias": "mnist-cnn has no alias gold (its aliases: champion"}[kind]
    assert expected in stderr
    if "unknown" in kind:
        assert "registered: " in stderr and "mnist-cnn (champion" in stderr


def test_predict_reads_the_store_of_a_project_that_moved(registry, tiny_model, tmp_path, monkeypatch, capsys):
    """The project's own store records absolute artifact paths: predict points them into the new
    folder, as the stages do, and loads the model from there."""
    import mlflow

    _, jobs, _ = registry
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in ("runs/a", "models/a"):
        (old / folder).mkdir(parents=True)
    (old / "models" / "a" / "seed0.keras").write_bytes(tiny_model.read_bytes())
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(old))
    before = mlflow.get_tracking_uri()
    try:
        tracking.connect(old)
        client = mlflow.MlflowClient()
        run = client.create_run(client.get_experiment_by_name("mnist-cnn").experiment_id)
        run_file = {"run_id": run.info.run_id, "experiment": "mnist-cnn"}
        (old / "runs" / "a" / "seed0.json").write_text(json.dumps(run_file))
        register.register(client, candidate("a", 0.9, 0.8), "champion", jobs["a"],
                          Namespace(runs=old / "runs", models=old / "models"), "code1", REGISTERED_BY)
        old.rename(new)
        monkeypatch.setenv("DVC_ROOT", str(new))
        monkeypatch.delenv("MLFLOW_TRACKING_URI")  # set_tracking_uri sets it: a new process has none
        (tmp_path / "one.png").write_bytes(png(DIGIT[..., None]))
        capsys.readouterr()  # what setting up said
        predict.main([str(tmp_path / "one.png")])
    finally:
        mlflow.set_tracking_uri(before)
    out, err = capsys.readouterr()
    assert err == f"tracking store: artifact paths moved from {old} to {new} (the project was moved or copied)\n"
    assert out.startswith(f"{tmp_path / 'one.png'}: ")
