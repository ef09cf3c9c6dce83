"""`make quick` and `make full`: the quick size written into params.yaml, comments kept, and the
values it replaced put back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_json, write_text
from pipeline.common.state_files import read_json
from pipeline.params.file import ParamsError, read_yaml, with_values
from pipeline.params.load import parse_params
from pipeline.params.schema import SIZES, TrainConfig


def size_words(train: TrainConfig) -> str:
    """The size a training runs at, in the words a message uses after "trains it": the quick size
    is named as such, since after `make quick` every later `dvc repro` trains at it."""
    if not train.smoke_run:
        return f"at full size ({train.epochs} epochs on every training image)"
    share = f"{train.epochs} epoch(s) on {train.subset:.0%} of the training images"
    quick = SIZES["quick"]
    if (train.epochs, train.subset) == (quick["train.epochs"], quick["train.subset"]):
        return f"at the quick size ({share}; `make full` first for the homework's)"
    return f"at {share}, a smoke run (`make full` for the homework's size)"


def set_size(path: Path, size: str) -> dict[str, Any]:
    """Write a size's values into params.yaml, comments kept. Going quick remembers the values it
    replaces, and going full restores them (the homework's size if there are none)."""
    saved = path.resolve().parent / ".dvc" / "tmp" / "size-before-quick.json"
    raw = read_yaml(path)
    current = {key: _lookup_path(raw, key) for key in SIZES["quick"]}
    if size == "quick":
        if current != SIZES["quick"]:
            write_json(saved, current)
        values = SIZES["quick"]
    else:
        values = _saved_values(saved, path) if saved.exists() else SIZES["full"]
    text = with_values(path.read_text(encoding="utf-8"), values)
    parse_params(yaml.safe_load(text), path)  # never write a file that would not load
    write_text(path, text)
    if size == "full":
        saved.unlink(missing_ok=True)
    return values


def _saved_values(saved: Path, path: Path) -> dict[str, Any]:
    """The values `size quick` replaced, if params.yaml can take them back."""
    recover = f"delete it (rm {saved}): `size full` then sets the homework's size"
    values = read_json(saved, dict[str, int | float], "the values before `size quick`", recover)
    if values.keys() != SIZES["full"].keys():
        raise PipelineError(f"{saved}: the values before `size quick`: expected the keys "
                            f"{', '.join(SIZES['full'])} (got {list(values)}); {recover}")
    try:
        parse_params(yaml.safe_load(with_values(path.read_text(encoding="utf-8"), values)), path)
    except ParamsError as exc:
        raise PipelineError(f"{saved}: the values before `size quick` do not fit params.yaml ({exc}); "
                            f"{recover}") from None
    return values


def _lookup_path(raw: dict, path: str) -> Any:
    for part in path.split("."):
        raw = raw[part]
    return raw
