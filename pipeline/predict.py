"""A registered model on your own images: the top 3 classes of each, with their probabilities.

    python -m pipeline.predict digit.png                                   # mnist-cnn@champion
    python -m pipeline.predict photos/ --model models:/cifar10-gray-cnn@champion

A folder stands for the files in it, in name order; a file that is no image (or not one the model
can take) is said in one line on stderr and skipped, and the exit status is then 1. The model is a
version the register stage registered (`models:/<name>@<alias>`, `models:/<name>/<version>`, or
just `<name>` for its champion; by default mnist-cnn's champion, or its smoke version where only
`make quick` ran). It applies the training's preprocessing itself, so any size, color or gray,
will do (a color model takes color images only); an MNIST model also inverts a dark digit on a
light background and frames the digit as MNIST's were, and says so after the classes (--invert,
--frame). A tool, not a stage: nothing here is a DVC output.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.serving import digits
from pipeline.serving.pyfunc import CHAMPION, SMOKE
from pipeline.tracking import store as tracking

DEFAULT_NAME = tracking.EXPERIMENTS["mnist"]
DEFAULT_MODEL = f"models:/{DEFAULT_NAME}@{CHAMPION}"
TOP = 3
BATCH = 32  # files read and predicted at a time: the memory a folder takes is this many files'
MODEL_URI = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")


def parse_model(text: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a model reference; a bare name means its champion."""
    match = MODEL_URI.match(text)
    if match is None:
        raise PipelineError(f"{text}: not a registered model (give models:/<name>@<alias>, models:/<name>/<version> "
                            "or <name>)")
    name, alias, version = match["name"], match["alias"], match["version"]
    return name, alias if alias or version else CHAMPION, version


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


def top_classes(probabilities: dict[str, float], top: int = TOP) -> list[tuple[str, float]]:
    """The `top` most probable classes, most probable first (the first class of equals first)."""
    return sorted(probabilities.items(), key=lambda item: -item[1])[:top]


def line(path: Path, probabilities: dict[str, float], notes: list[str]) -> str:
    """The image's top classes, and what was done to it beyond the training's preprocessing."""
    said = f" ({'; '.join(notes)})" if notes else ""
    return f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in top_classes(probabilities)) + said


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


def default_model(client) -> str:
    """mnist-cnn's champion; its smoke version, said in one line, where only a smoke run registered one."""
    import mlflow

    try:
        client.get_model_version_by_alias(DEFAULT_NAME, CHAMPION)
    except mlflow.exceptions.MlflowException:
        try:
            client.get_model_version_by_alias(DEFAULT_NAME, SMOKE)
        except mlflow.exceptions.MlflowException:
            return resolve(client, DEFAULT_MODEL)  # neither: one line naming what exists
        print(f"{DEFAULT_MODEL}: none yet (a full-size run registers it); using {DEFAULT_NAME}@{SMOKE}, "
              "the smoke run's", file=sys.stderr)
        return f"models:/{DEFAULT_NAME}@{SMOKE}"
    return DEFAULT_MODEL


def skip(path: Path, reason: str) -> None:
    print(cli.one_line(f"error: {path}: {reason}"), file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...) or folders of them")
    parser.add_argument("--model", help=f"a registered model (default: {DEFAULT_MODEL}, or its @{SMOKE} version "
                        "where there is none)")
    parser.add_argument("--invert", choices=digits.INVERT, default=digits.INVERT[0],
                        help="MNIST: invert the image (auto: a dark digit on a light background)")
    parser.add_argument("--frame", choices=digits.FRAME, default=digits.FRAME[0],
                        help="MNIST: crop the digit, scale it into 20x20 and centre it in 28x28, as MNIST's were")
    args = parser.parse_args(argv)
    files = image_files(args.images)
    tracking.quiet_mlflow()

    import mlflow

    from pipeline.model.runtime import load_tensorflow
    from pipeline.serving.pyfunc import encode

    load_tensorflow()  # before the model loads it: without TensorFlow's C++ chatter on stderr
    tracking.connect(tracking.project_root())
    client = mlflow.MlflowClient()
    model = mlflow.pyfunc.load_model(resolve(client, args.model) if args.model else default_model(client))
    try:
        digits.check_choices(model.unwrap_python_model().record, args.invert, args.frame)
    except digits.ChoiceRejected as exc:
        raise PipelineError(f"--{exc}") from None
    skipped = 0
    for start in range(0, len(files), BATCH):
        batch = files[start:start + BATCH]
        found = []
        for path in batch:
            try:
                found.append((path, path.read_bytes()))
            except OSError as exc:
                skip(path, f"cannot read it ({exc.strerror})")
                skipped += 1
        if not found:
            continue
        answers = model.predict(encode([data for _, data in found]), params={"invert": args.invert,
                                                                            "frame": args.frame})
        for (path, _), row in zip(found, answers.to_dict("records")):
            if row["error"]:
                skip(path, row["error"])
                skipped += 1
            else:
                print(line(path, row["probabilities"], row["notes"]), flush=True)
    if skipped:
        sys.exit(1)  # each said in its line


if __name__ == "__main__":
    cli.run(main)
