"""cli.run, which every stage's main runs under: exit codes, one-line messages, broken pipes,
interruptions and the signals held off while a checkpoint is written."""

import gc
import os
import signal
import subprocess
import sys

import pytest

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from tests.helpers import REPO, project_env


def _run(main, capsys) -> tuple[int, str]:
    try:
        cli.run(main, [])
        status = 0
    except SystemExit as exc:
        status = exc.code
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return status, capsys.readouterr().err


def test_a_finished_stage_leaves_its_objects_out_of_the_exit_collections():
    try:
        cli.run(lambda argv: None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_pipeline_error_is_one_line_with_its_notes_and_exit_status_1(capsys):
    def main(argv):
        error = PipelineError("params.yaml: train.epochs: must be\npositive")
        error.add_note("see README")
        raise error

    status, stderr = _run(main, capsys)
    assert status == 1 and stderr == "error: params.yaml: train.epochs: must be\\npositive; see README\n"


def test_a_program_missing_from_path_is_named_and_other_missing_files_are_not_hidden(capsys):
    status, stderr = _run(lambda argv: subprocess.run(["no-such-program-here"]), capsys)
    assert status == 1 and stderr.startswith("error: no-such-program-here: no such program on PATH")
    assert stderr.count("\n") == 1

    def opens(argv):
        open("/no/such/file")

    with pytest.raises(FileNotFoundError):
        cli.run(opens, [])


@pytest.mark.parametrize("exc,word", [(KeyboardInterrupt(), "interrupted"), (cli.Terminated("15"), "terminated")])
def test_an_interruption_exits_130_saying_nothing_was_written(capsys, exc, word):
    def main(argv):
        raise exc

    status, stderr = _run(main, capsys)
    assert status == 130 and stderr == f"error: {word}; outputs of this stage were not written\n"


def test_sigterm_raises_terminated_so_cleanup_runs(capsys):
    cleaned = []

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            cleaned.append(True)

    status, stderr = _run(main, capsys)
    assert status == 130 and "terminated" in stderr and cleaned == [True]


def test_deferred_interrupts_act_on_a_signal_only_when_the_block_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with cli.deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            steps.append("block went on")  # not interrupted mid-checkpoint
    assert steps == ["block went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_a_closed_pipe_ends_the_stage_quietly_with_status_0():
    """`python -m pipeline.params size | head -c1`: the reader closes early; no traceback, exit 0."""
    code = ("from pipeline.common import cli\n"
            "def main(argv):\n"
            "    for _ in range(100000): print('x' * 100)\n"
            "cli.run(main)\n")
    reader = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=project_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.read(10)
    reader.stdout.close()
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 0 and stderr == ""
