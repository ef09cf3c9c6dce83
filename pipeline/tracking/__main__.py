"""The project's tracking store from the command line.

    python -m pipeline.tracking init   # check the store, and create it if new
"""

from __future__ import annotations

import argparse
import sys

from pipeline.common import cli
from pipeline.tracking.store import connect, project_root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tracking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("init",))
    parser.parse_args(argv)
    print(f"tracking store ready: {connect(project_root())}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
