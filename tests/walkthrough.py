"""Run the README's walkthrough verbatim on fixture data: every shell block marked
`<!-- walkthrough -->`, in order, in a fresh clone of this checkout.

    python -m tests.walkthrough          # prints each block, its exit status, time and output tail

`make test` runs it too (tests/test_walkthrough_e2e.py). What differs from
a user's clone: params.yaml is cut to the fixture settings (tests.helpers.tiny_params) with
FULL_EPOCHS epochs, so that the homework's size and the quick size differ; the data comes from a
generated fixture mirror through PIPELINE_DATA_MIRROR, and .venv is this checkout's. Blocks run
one after another as in one terminal: once a block has activated .venv, the later ones run with it.

A marker may say `after setting <key.path> to <value>`: that edit of params.yaml, which the README
asks the reader to make by hand, is made first, and must still be there after every later block
(nothing may throw a user's edit away). It may say what the block trains: `trains nothing`,
`trains all` or `trains <setting> ...`, `at the quick size` or `at the full size`; the block must
train exactly those settings, for that size's epochs, and announce how long each takes: a block
that trains through `make` must have the estimate name every setting it trains (the Makefile
promises it); `dvc` itself has no estimate, so there the train stage's own line after its first
epoch is the announcement. A block that runs `dvc queue status` must see no experiment Failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

from pipeline.params.schema import SIZES
from tests.datasets import write_mirror
from tests.helpers import REPO, VENV_BIN, estimated, project_env, run, tiny_params, wait_for_queue

MARKER = re.compile(r"<!--\s*walkthrough(?::\s*(.*?))?\s*-->")
EDIT = re.compile(r"after setting (\S+) to ([^;\s]+)")
TRAINS = re.compile(r"trains ([^;]+?)(?: at the (quick|full) size)?\s*(?:;|$)")
ACTIVATE = ". .venv/bin/activate"
FULL_EPOCHS = 3


def walkthrough_blocks(readme: str) -> list[tuple[str, str]]:
    """(marker note, shell text) of each fenced block right after a walkthrough marker."""
    tokens = MarkdownIt().parse(readme)
    blocks = []
    for previous, token in zip(tokens, tokens[1:]):
        if token.type == "fence" and previous.type == "html_block":
            marker = MARKER.search(previous.content)
            if marker:
                blocks.append((marker.group(1) or "", token.content))
    return blocks


def edit_params(clone: Path, note: str, edits: dict[str, object]) -> None:
    match = EDIT.search(note)
    if not match:
        return
    key, value = match.group(1), yaml.safe_load(match.group(2))
    params = yaml.safe_load((clone / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    edits[key] = value


def _value(params: dict, key: str):
    for part in key.split("."):
        params = params[part]
    return params


def problems(note: str, script: str, output: str, clone: Path, edits: dict[str, object],
             settings: list[str]) -> list[str]:
    """What the block did that its marker, or a user, would not expect."""
    found = []
    params = yaml.safe_load((clone / "params.yaml").read_text())
    found += [f"params.yaml lost the edit {key}: {value}" for key, value in edits.items()
              if _value(params, key) != value]
    if "dvc queue status" in script and re.search(r"\sFailed\s*$", output, re.MULTILINE):
        found.append("a queued experiment failed (dvc queue status says Failed)")
    trains = TRAINS.search(note)
    if not trains:
        return found
    what, size = trains.groups()
    expected = set() if what == "nothing" else set(settings) if what == "all" else set(what.split())
    trained = set(re.findall(r"Running stage 'train@([^']+)-\d+'", output))
    if trained != expected:
        found.append(f"trained {sorted(trained)}, expected {sorted(expected)}")
    epochs = {int(n) for n in re.findall(r"^Epoch \d+/(\d+)$", output, re.MULTILINE)}
    size_epochs = SIZES["quick"]["train.epochs"] if size == "quick" else FULL_EPOCHS
    if trained and epochs != {size_epochs}:
        found.append(f"trained for {sorted(epochs)} epochs, expected {size_epochs} (the {size} size)")
    announced = set(re.findall(r"^(\S+) seed \d+: epoch 1 of \d+ took", output, re.MULTILINE))
    if trained - announced:
        found.append(f"no estimate of the time left for {sorted(trained - announced)}")
    if re.search(r"^\s*(YES=1 )?make ", script, re.MULTILINE) and trained - set(estimated(output)):
        found.append(f"trained {sorted(trained - set(estimated(output)))} without the estimate naming them first")
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="walkthrough-") as tmp:
        clone = Path(tmp) / "hw2"
        run(["git", "clone", "-q", str(REPO), str(clone)], Path(tmp))
        blocks = walkthrough_blocks((clone / "README.md").read_text(encoding="utf-8"))  # the README of the code run
        (clone / ".venv").symlink_to(REPO / ".venv")
        installed = REPO / ".venv" / ".installed"
        if installed.exists():  # the clone's lock file is no newer: its `make` installs nothing into the shared .venv
            stamp = installed.stat().st_mtime_ns  # to the nanosecond: a float may round it up, newer
            os.utime(clone / "requirements-lock.txt", ns=(stamp, stamp))
        shipped = tiny_params()
        shipped["train"]["epochs"] = FULL_EPOCHS
        (clone / "params.yaml").write_text(yaml.safe_dump(shipped, sort_keys=False))
        run(["git", "-c", "user.name=w", "-c", "user.email=w@w", "commit", "-qam", "fixture params"], clone)
        env = project_env(PIPELINE_DATA_MIRROR=str(write_mirror(Path(tmp) / "mirror")))
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(VENV_BIN))
        activated = ""  # one terminal: once a block activated the venv, later blocks run in it
        edits: dict[str, object] = {}
        for number, (note, script) in enumerate(blocks, start=1):
            edit_params(clone, note, edits)
            print(f"--- block {number}{f' ({note})' if note else ''}:\n{script.rstrip()}", flush=True)
            started = time.monotonic()
            result = subprocess.run(["bash", "-e", "-c", activated + script], cwd=clone, env=env,
                                    capture_output=True, text=True)
            if ACTIVATE in script:
                activated = ACTIVATE + "\n"
            output = result.stdout + result.stderr
            print(f"--- exit {result.returncode} after {time.monotonic() - started:.0f} s; last lines:")
            print("\n".join(output.strip().splitlines()[-15:]), flush=True)
            found = problems(note, script, output, clone, edits, list(shipped["settings"]))
            for problem in found:
                print(f"--- PROBLEM: {problem}", flush=True)
            if result.returncode != 0 or found:
                return 1
        print("--- the queue, once drained:\n" + wait_for_queue(clone, project_env(), timeout=900))
    return 0


if __name__ == "__main__":
    sys.exit(main())
