"""Entry-point helper shared by the stage modules."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

from pipeline.errors import PipelineError


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that cleanup code runs as it does for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated(f"received signal {signum}")


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's main; a PipelineError or an interruption ends it with one line on stderr."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"error: {what}; outputs of this stage were not written", file=sys.stderr)
        sys.exit(130)
