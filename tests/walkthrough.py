"""Run the README's walkthrough verbatim on fixture data: every shell block marked
`<!-- walkthrough -->`, in order, in a fresh clone of this checkout.

    python -m tests.walkthrough          # prints each block, its exit status, time and output tail

Not part of `make test` (it runs the whole pipeline more than once: minutes). What differs from
a user's clone: params.yaml is cut to the fixture settings and epochs (tests.conftest.tiny_params),
the data comes from a generated fixture mirror through PIPELINE_DATA_MIRROR, and .venv is this
checkout's. A marker may say `after setting <key.path> to <value>`: that edit of params.yaml,
which the README asks the reader to make by hand, is made first. Blocks run one after another as
in one terminal: once a block has activated .venv, the later ones run with it active.
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

from tests.datasets import write_mirror
from tests.helpers import REPO, VENV_BIN, project_env, run, tiny_params, wait_for_queue

MARKER = re.compile(r"<!--\s*walkthrough(?::\s*(.*?))?\s*-->")
EDIT = re.compile(r"after setting (\S+) to (\S+)")
ACTIVATE = ". .venv/bin/activate"


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


def edit_params(clone: Path, note: str) -> None:
    match = EDIT.search(note)
    if not match:
        return
    key, value = match.groups()
    params = yaml.safe_load((clone / "params.yaml").read_text())
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = yaml.safe_load(value)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> int:
    blocks = walkthrough_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="walkthrough-") as tmp:
        clone = Path(tmp) / "hw2"
        run(["git", "clone", "-q", str(REPO), str(clone)], Path(tmp))
        (clone / ".venv").symlink_to(REPO / ".venv")
        (clone / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
        run(["git", "-c", "user.name=w", "-c", "user.email=w@w", "commit", "-qam", "fixture params"], clone)
        env = project_env(PIPELINE_DATA_MIRROR=str(write_mirror(Path(tmp) / "mirror")))
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(VENV_BIN))
        activated = ""  # one terminal: once a block activated the venv, later blocks run in it
        for number, (note, script) in enumerate(blocks, start=1):
            edit_params(clone, note)
            print(f"--- block {number}{f' ({note})' if note else ''}:\n{script.rstrip()}", flush=True)
            started = time.monotonic()
            result = subprocess.run(["bash", "-e", "-c", activated + script], cwd=clone, env=env,
                                    capture_output=True, text=True)
            if ACTIVATE in script:
                activated = ACTIVATE + "\n"
            output = (result.stdout + result.stderr).strip().splitlines()
            print(f"--- exit {result.returncode} after {time.monotonic() - started:.0f} s; last lines:")
            print("\n".join(output[-15:]), flush=True)
            if result.returncode != 0:
                return 1
        print("--- the queue, once drained:\n" + wait_for_queue(clone, project_env(), timeout=1800))
    return 0


if __name__ == "__main__":
    sys.exit(main())
