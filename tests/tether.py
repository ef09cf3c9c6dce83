"""`python -m tests.tether COMMAND...`: runs COMMAND and ends it, with its whole process group,
when the process that started this one ends: a test server that dies with the test run, also when
the run is killed (pytest-timeout, `timeout`, Ctrl-C, SIGKILL) before its clean-up could run.

Started as the leader of a process group of its own (tests.helpers.tethered), so that the test
stops the server, as before, by signalling that group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main(command: list[str]) -> int:
    owner = os.getppid()
    server = subprocess.Popen(command)  # in this process's group
    while server.poll() is None:
        if os.getppid() != owner:  # the test run is gone: this process was handed to init
            os.killpg(0, signal.SIGTERM)
        time.sleep(0.5)
    return server.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
