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

from pipeline.common import cli
from pipeline.params.load import load_params
from pipeline.params.schema import SIZES
from pipeline.params.size import set_size


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
