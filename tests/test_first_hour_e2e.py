"""The README's first hour as a user types it, through the Makefile: `make quick`, an edit of one
setting, then the homework's size, with the estimate's question answered at a terminal."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    VENV_BIN,
    copy_project,
    dvc,
    estimated,
    keep_settings,
    project_env,
    seconds_left,
    shipped_params,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # four `make repro`s on a fresh project

SETTINGS = ("mnist-k3-s1", "mnist-k3-s1-l2")
MAKE = ["make", "--no-print-directory"]


def make_in_terminal(repo: Path, target: str, env: dict[str, str], answer: str | None = None,
                     stop_when: bytes | None = None, timeout: float = 600) -> tuple[int, str]:
    """`make <target>` on a pseudo-terminal, as typed in one; `answer` is typed once the estimate
    asks; once `stop_when` is shown, make and all it started are killed. Its exit status and
    everything it showed."""
    leader, follower = os.openpty()
    process = subprocess.Popen([*MAKE, target], cwd=repo, env=env, stdin=follower, stdout=follower,
                               stderr=follower, start_new_session=True)
    os.close(follower)
    shown, answered, deadline = b"", False, time.monotonic() + seconds_left(timeout)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: every process on it has exited
                break
            if not chunk:
                break
            shown += chunk
        if answer is not None and not answered and b"Start it? [y/N]" in shown:
            os.write(leader, answer.encode() + b"\n")
            answered = True
        if stop_when is not None and stop_when in shown:
            os.killpg(process.pid, signal.SIGKILL)
            break
    else:  # out of time: `make` and every stage it started, so that the test fails on what was shown
        os.killpg(process.pid, signal.SIGKILL)
    os.close(leader)
    return process.wait(timeout=30), shown.decode(errors="replace").replace("\r\n", "\n")


def trained(output: str) -> list[str]:
    return re.findall(r"Running stage 'train@([^']+)'", output)


@pytest.fixture
def project(mirror, tmp_path):
    repo = copy_project(tmp_path / "hw2", keep_settings(shipped_params(), SETTINGS))
    for name in ("Makefile", "requirements-lock.txt"):
        shutil.copy2(REPO / name, repo / name)
    # This interpreter's environment as the project's .venv, installed as far as make can tell.
    (repo / ".venv").mkdir()
    for entry in VENV_BIN.parent.iterdir():
        if not entry.name.startswith("."):
            (repo / ".venv" / entry.name).symlink_to(entry)
    (repo / ".venv" / ".installed").touch()
    return repo, project_env(PIPELINE_DATA_MIRROR=str(mirror))


def test_every_make_repro_names_what_it_will_train_and_asks_before_the_full_size(project):
    repo, env = project
    quick = subprocess.run([*MAKE, "quick"], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=seconds_left(900))
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert "dvc repro will train 2 settings x 2 epochs on 20 % of the images" in quick.stderr
    assert sorted(estimated(quick.stderr)) == sorted(SETTINGS) and sorted(trained(quick.stdout)) == \
        [f"{name}-0" for name in SETTINGS]

    # One setting's value: the edit reaches training only through that setting's job file.
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("l2: 0.001", "l2: 0.01"))
    edited = subprocess.run([*MAKE, "repro"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=seconds_left(900))
    assert edited.returncode == 0, edited.stderr[-3000:]
    assert "dvc repro will train 1 setting x 2 epochs on 20 % of the images" in edited.stderr
    assert estimated(edited.stderr) == ["mnist-k3-s1-l2"] and trained(edited.stdout) == ["mnist-k3-s1-l2-0"]
    assert "Running stage 'job@" not in edited.stdout  # run before the estimate, so not again by dvc repro
    # where the whole run is: a line per stage after DVC's, k of n as `dvc repro --dry` counted them
    stages = re.findall(r"^Running stage '([^']+)':\n\[stage (\d+) of (\d+): \1; ", edited.stdout, re.MULTILINE)
    assert [(int(k), int(n)) for _, k, n in stages] == [(k, len(stages)) for k in range(1, len(stages) + 1)]
    assert [stage for stage, _, _ in stages][:2] == ["train@mnist-k3-s1-l2-0", "evaluate@mnist-k3-s1-l2-0"]

    # The homework's size: every setting, at its full epochs, over an hour by the recorded timings.
    full = subprocess.run([str(VENV_BIN / "python"), "-m", "pipeline.params", "size", "full"], cwd=repo,
                          env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    slow_timings(repo)
    code, shown = make_in_terminal(repo, "repro", env, answer="n")
    assert code != 0 and "Start it? [y/N]" in shown, shown[-3000:]
    assert "dvc repro will train 2 settings x 50 epochs: about" in shown
    assert sorted(estimated(shown)) == sorted(SETTINGS)
    assert "error: not started" in shown and not trained(shown)
    status = dvc(repo, "status", env=env).stdout  # consistent: the job files are done, training is not
    assert not re.search(r"^job@", status, re.MULTILINE)
    assert {f"train@{name}-0:" for name in SETTINGS} <= set(status.split())

    # YES=1 starts it without asking: stopped once the first training has begun its 50 epochs (the
    # epochs themselves would only cost the suite minutes).
    _, shown = make_in_terminal(repo, "repro", {**env, "YES": "1"}, stop_when=b"Epoch 1/50")
    assert "Epoch 1/50" in shown, shown[-3000:]
    assert "Start it?" not in shown and sorted(estimated(shown)) == sorted(SETTINGS)
    assert len(trained(shown)) == 1 and trained(shown)[0] in [f"{name}-0" for name in SETTINGS]


def slow_timings(repo: Path) -> None:
    """Epoch timings, as the train stage records them, that put each setting at 50 x 100 s."""
    from pipeline.params.load import load_params
    from pipeline.train import training_images
    from pipeline.training.estimate import split_sizes
    from pipeline.training.timings import EpochTiming, machine_kind, record_timing

    params = load_params(repo / "params.yaml")
    train_total, val_images = split_sizes(repo, "mnist", params.preprocess.val_fraction)
    for name in SETTINGS:
        record_timing(repo, name, EpochTiming(machine_kind(), params.train.batch_size,
                                              training_images(train_total, 1.0), val_images, 100.0,
                                              params.train.precision))
