"""A registered model on your own images: the top 3 classes of each, with their probabilities.

    python -m pipeline.predict digit.png                                   # mnist-cnn@champion
    python -m pipeline.predict photos/ --model models:/cifar10-gray-cnn@champion

A folder stands for the files in it. The model is a version the register stage registered
(`models:/<name>@<alias>`, `models:/<name>/<version>`, or just `<name>` for its champion); it
applies the training's preprocessing itself, so any size, color or gray, will do (a color model
takes color images only). A tool, not a stage: nothing here is a DVC output.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.serving.images import ImageRejected, decode, pixels
from pipeline.tracking import store as tracking

DEFAULT_MODEL = "models:/mnist-cnn@champion"
TOP = 3
MODEL_URI = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")


def parse_model(text: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a model reference; a bare name means its champion."""
    match = MODEL_URI.match(text)
    if match is None:
        raise PipelineError(f"{text}: not a registered model (give models:/<name>@<alias>, models:/<name>/<version> "
                            "or <name>)")
    name, alias, version = match["name"], match["alias"], match["version"]
    return name, alias if alias or version else "champion", version


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder standing for the (non-hidden) files in it, sorted."""
    files = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise PipelineError(f"{path}: a folder with no files in it")
            files.extend(inside)
        else:
            files.append(path)
    return files


def read_images(files: list[Path]) -> list[bytes]:
    """Each file's bytes, once it proved to be an image: one line for the first that is not."""
    found = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read it ({exc.strerror})") from None
        try:
            decode(data)
        except ImageRejected as exc:
            raise PipelineError(f"{path}: {exc}") from None
        found.append(data)
    return found


def top_classes(probabilities: dict[str, float], top: int = TOP) -> list[tuple[str, float]]:
    """The `top` most probable classes, most probable first (the first class of equals first)."""
    return sorted(probabilities.items(), key=lambda item: -item[1])[:top]


def line(path: Path, probabilities: dict[str, float]) -> str:
    return f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in top_classes(probabilities))


def what_exists(client) -> str:
    """The registered models and their aliases, for a message."""
    models = client.search_registered_models()
    if not models:
        return "the registry holds no model yet (dvc repro registers them)"
    named = [f"{model.name} ({', '.join(sorted(model.aliases)) or 'no alias'})" for model in models]
    return "registered: " + "; ".join(sorted(named))


def resolve(client, text: str) -> str:
    """The model's URI once it exists; one line naming those that do otherwise."""
    import mlflow

    name, alias, version = parse_model(text)
    try:
        if version is not None:
            client.get_model_version(name, version)
            return f"models:/{name}/{version}"
        client.get_model_version_by_alias(name, alias)
        return f"models:/{name}@{alias}"
    except mlflow.exceptions.MlflowException:
        pass
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise PipelineError(f"{text}: no registered model {name} in {redact(tracking.mlflow_uri())}; "
                            f"{what_exists(client)}") from None
    which = f"version {version}" if version else f"alias {alias}"
    has = ", ".join(sorted(model.aliases)) or "none"
    raise PipelineError(f"{text}: {name} has no {which} (its aliases: {has}); {what_exists(client)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...) or folders of them")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a registered model (default: {DEFAULT_MODEL})")
    args = parser.parse_args(argv)
    files = image_files(args.images)
    images = read_images(files)

    import mlflow

    from pipeline.model.runtime import load_tensorflow

    load_tensorflow()  # before the model loads it: without TensorFlow's C++ chatter on stderr
    mlflow.set_tracking_uri(tracking.tracking_uri(tracking.project_root()))
    uri = resolve(mlflow.MlflowClient(), args.model)
    model = mlflow.pyfunc.load_model(uri)
    record = model.unwrap_python_model().record
    for path, data in zip(files, images):
        try:  # what the model's dataset cannot take, said before any prediction is printed
            pixels(decode(data), record)
        except ImageRejected as exc:
            raise PipelineError(f"{path}: {exc}") from None
    from pipeline.serving.pyfunc import encode

    answers = model.predict(encode(images))
    for path, probabilities in zip(files, answers["probabilities"]):
        print(line(path, probabilities))


if __name__ == "__main__":
    cli.run(main)
