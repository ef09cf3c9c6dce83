"""Ctrl-C and SIGTERM for long work that can stop between steps (an Optuna study's trials)."""

from __future__ import annotations

import contextlib
import signal

from pipeline.common.cli import Terminated


class SafeStops:
    """Ctrl-C and SIGTERM, acted on at the next safe point (a batch's end, a trial's start) rather
    than wherever Python happens to be: a KeyboardInterrupt raised inside a garbage-collection
    callback of SQLAlchemy or TensorFlow is printed and dropped, and the work would go on (an Optuna
    study's trials). Unlike cli.deferred_interrupts, the work itself asks (check) where it may stop."""

    def __init__(self):
        self.signum = None

    @contextlib.contextmanager
    def installed(self):
        def note(signum, frame):
            self.signum = signum

        previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def check(self) -> None:
        if self.signum == signal.SIGTERM:
            raise Terminated(f"received signal {self.signum}")
        if self.signum is not None:
            raise KeyboardInterrupt()
