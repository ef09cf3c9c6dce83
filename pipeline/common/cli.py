"""Entry-point helper shared by the stage modules."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence

from pipeline.common.errors import PipelineError


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that cleanup code runs as it does for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated(f"received signal {signum}")


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT/SIGTERM until the block is done: a kill never lands mid-checkpoint.

    Python runs signal handlers in the main thread whichever thread the OS delivered the signal
    to, so swapping the handlers (not the per-thread signal mask) also covers TensorFlow's
    threads. A signal received meanwhile is acted on when the block ends.
    """
    received = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])


def one_line(message: str) -> str:
    """A message for stderr kept on one line, whatever a name or value from a file put in it."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's main; a PipelineError or an interruption ends it with one line on stderr."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main(argv)
        # Python's collections at exit would walk every object TensorFlow and MLflow made: 1.5 s of
        # each TensorFlow stage's start-to-exit on a 2-core CPU, for nothing (outputs are closed and
        # the run's status set by now). Frozen objects are left to the OS, as all memory is anyway.
        gc.freeze()
    except PipelineError as exc:
        notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
        print(one_line(f"error: {exc}{notes}"), file=sys.stderr)
        sys.exit(1)
    except FileNotFoundError as exc:
        if not _program_missing(exc):
            raise
        print(f"error: {exc.filename}: no such program on PATH; activate the project's environment "
              "(. .venv/bin/activate) or install it", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
        print(f"error: {what}; outputs of this stage were not written{notes}", file=sys.stderr)
        sys.exit(130)


def _program_missing(exc: FileNotFoundError) -> bool:
    """Whether subprocess raised it, for a command (dvc, git) it found nowhere on PATH: the one
    place that knows, for every stage and helper that runs one."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename == subprocess.__file__
