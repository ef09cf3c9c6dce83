"""A run's provenance as MLflow tags (columns in `mlflow ui`, filters for `search_runs`), and its
uncommitted edit as an artifact; read back, one run's, by `python -m pipeline.provenance RUN_ID`.

    git_commit, git_dirty, code     the checkout's commit, whether it had edits, both in one word
    code_diff                       where the edit is (code/uncommitted.diff), or why it is not there
    command, dvc_stage              what ran it
    machine                         the machine kind in one line; machine.cpu, .cores, .bf16, .gpus, .os
    version.<name>                  Python's and LIBRARIES' versions

A stage that adds to another's run (evaluate, to its training's) writes the code and machine keys
under its own prefix (`evaluate.git_commit`, ...): the run then says what made each part of it.
"""

from __future__ import annotations

import os
import shlex
import sys

from pipeline.provenance.code import DIFF_CAP_BYTES, CodeState, code_state
from pipeline.provenance.machine import Machine, this_machine

NOT_RECORDED = "not recorded"  # read back from a run made before these tags were written
DIFFERS = "differs between its runs"  # a group of runs' tag (a setting's parent run) where they disagree
DIFF_FILE = "uncommitted.diff"
TAG_VALUE_LIMIT = 5000  # MLflow's limit on a tag's value; a command line longer than that is cut
CODE_KEYS = ("git_commit", "git_dirty", "code", "code_diff", "command", "dvc_stage")
MACHINE_KEY = "machine"
VERSION_PREFIX = "version."


def diff_artifact(prefix: str = "") -> str:
    """Where a run keeps the uncommitted edit of the stage that wrote `prefix`ed tags."""
    return "/".join(["code", *([prefix.rstrip(".")] if prefix else []), DIFF_FILE])


def code_tags(code: CodeState, prefix: str = "") -> dict[str, str]:
    if code.dirty is None:
        where = f"unknown: {code.unknown_because}"
    elif not code.dirty:
        where = "none: the code is the commit's"
    elif code.logged_whole:
        where = diff_artifact(prefix)
    else:
        where = (f"not logged: {len(code.diff.encode()) / 1e6:.1f} MB, over the {DIFF_CAP_BYTES / 1e6:.0f} MB cap "
                 f"(sha256 {code.digest})")
    tags = {"git_commit": code.commit, "git_dirty": "unknown" if code.dirty is None else str(code.dirty).lower(),
            "code": code.identity, "code_diff": where,
            "command": shlex.join(getattr(sys, "orig_argv", sys.argv))[:TAG_VALUE_LIMIT],
            "dvc_stage": os.environ.get("DVC_STAGE") or "none: not run by dvc"}
    return {prefix + key: value for key, value in tags.items()}


def machine_tags(machine: Machine) -> dict[str, str]:
    cores = "unknown" if machine.cores is None else str(machine.cores)
    bf16 = "unknown" if machine.bf16 is None else "yes" if machine.bf16 else "no"
    return {MACHINE_KEY: machine.kind, "machine.cpu": machine.cpu, "machine.cores": cores, "machine.bf16": bf16,
            "machine.gpus": machine.gpus, "machine.os": machine.os, f"{VERSION_PREFIX}python": machine.python,
            **{VERSION_PREFIX + name: version for name, version in machine.versions.items()}}


def provenance_tags(prefix: str = "", code: CodeState | None = None) -> dict[str, str]:
    """Every tag of this process's provenance; under a prefix, the code's and the machine kind."""
    code = code or code_state()
    machine = machine_tags(this_machine())
    if prefix:
        return {**code_tags(code, prefix), prefix + MACHINE_KEY: machine[MACHINE_KEY]}
    return {**code_tags(code), **machine}


def record_provenance(client, run_id: str, prefix: str = "") -> dict[str, str]:
    """Tag the run with this process's provenance and log its uncommitted edit; the tags."""
    from mlflow.entities import RunTag

    code = code_state()
    tags = provenance_tags(prefix, code)
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    if code.logged_whole:
        client.log_text(run_id, code.diff, diff_artifact(prefix))
    return tags


def is_provenance_key(key: str) -> bool:
    """Whether a run's tag is one of provenance_tags' (unprefixed)."""
    return key in CODE_KEYS or key == MACHINE_KEY or key.startswith((f"{MACHINE_KEY}.", VERSION_PREFIX))


def shared_provenance(runs_tags: list[dict[str, str]]) -> dict[str, str]:
    """The provenance tags of a group of runs (a setting's seeds): each key's value where they all
    agree, DIFFERS where they do not, NOT_RECORDED where one lacks it."""
    keys = sorted({key for tags in runs_tags for key in tags if is_provenance_key(key)})
    shared = {}
    for key in keys:
        values = {tags.get(key, NOT_RECORDED) for tags in runs_tags}
        shared[key] = values.pop() if len(values) == 1 else NOT_RECORDED if NOT_RECORDED in values else DIFFERS
    return shared


def versions_of(tags: dict[str, str]) -> str:
    """The library versions a run recorded, in one line ("" where it recorded none)."""
    return ", ".join(f"{key.removeprefix(VERSION_PREFIX)} {value}" for key, value in sorted(tags.items())
                     if key.startswith(VERSION_PREFIX))
