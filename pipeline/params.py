"""params.yaml from the command line (the Makefile's `make quick` and `make full` use it).

    python -m pipeline.params check       # validate params.yaml; one line naming the first problem
    python -m pipeline.params settings    # the setting names, one per line (for shell loops)
    python -m pipeline.params runs        # <setting>-<seed> for every setting and seed: train@<run> stages
    python -m pipeline.params size quick  # train briefly (make quick); `size full`: the homework's size
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import cli
from pipeline.config import SIZES, load_params, parse_params
from pipeline.errors import PipelineError
from pipeline.outputs import write_json, write_text
from pipeline.params_file import ParamsError, read_yaml, with_values
from pipeline.state_files import read_json


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.params", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "settings", "runs", "size"))
    parser.add_argument("size", nargs="?", choices=tuple(SIZES), help="with `size`: which one")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.command == "settings":
        print("\n".join(params.settings))
    elif args.command == "runs":
        print("\n".join(f"{name}-{seed}" for name in params.settings for seed in params.seeds))
    elif args.command == "size":
        if args.size is None:
            parser.error("size: say quick or full")
        values = set_size(args.params, args.size)
        print(f"{args.params}: " + ", ".join(f"{key} {value}" for key, value in values.items()), file=sys.stderr)
    else:
        print(f"{args.params}: {len(params.settings)} settings, valid")


if __name__ == "__main__":
    cli.run(main)
