"""A study's result as params.yaml text: the best trial as a setting (`<base>-searched`, or the
entry's `result:`) and a sweep (the entry's name, or its `result:`) comparing it with its base.

Only those two blocks of lines are written (pipeline.params.searched finds them): added after the
base and after the last sweep, or replaced where this search wrote them before; every other byte
of the file stays. The setting is written out in full, its own plain mapping (no YAML anchors: an
alias to the base's `dropout` list would change with the base). A best trial that trains as the
base does is written nowhere: the sweep would compare a setting with itself.

The sweep varies the keys the searched setting differs from its base in. One key: that key, like
the homework's sweeps. Several (a search seldom changes one value only): all of them, joined with
`+` (`vary: learning_rate+batch_size`); pipeline.params.checks allows a sweep's settings to differ
in exactly those keys, and the report labels its rows with each. Picking one of them as `vary`
would misstate what was compared; splitting the change into one sweep per key would train
settings nobody chose.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import io
import os
from dataclasses import replace
from pathlib import Path

from pipeline.common.errors import PipelineError
from pipeline.common.outputs import write_text
from pipeline.params.load import parse_params
from pipeline.params.schema import Params, resolve, resolved, setting_values
from pipeline.params.searched import MARKER, Block, blocks, check_result_names
from pipeline.params.space import SearchEntry, result_names


def changed_keys(params: Params, entry: SearchEntry, values: dict) -> list[str]:
    """The keys in which the base with `values` trains differently from the base, in the order of
    the search space."""
    base = params.settings[entry.base]
    model = getattr(params.models, base.dataset)
    before = setting_values(*resolved(params, entry.base))
    after = setting_values(*resolve(replace(base, **values), params.train, model))
    return [key for key in entry.space if before[key] != after[key]]


def _block_text(key: str, mapping: dict, note: str, column: int) -> str:
    """`key: mapping` as block YAML indented by `column`, lists in brackets, the note on the key line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    document = YAML()
    document.width = 4096
    document.representer.ignore_aliases = lambda data: True  # each value written out where it is used
    body = CommentedMap()
    for name, value in mapping.items():
        if isinstance(value, (list, tuple)):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        body[name] = value
    out = io.StringIO()
    document.dump({key: body}, out)
    first, *rest = out.getvalue().splitlines()
    return "".join(f"{' ' * column}{line}\n" for line in [f"{first}  # {note}", *rest])


def result_data(raw: dict, name: str, entry: SearchEntry, values: dict) -> tuple[dict, dict]:
    """The setting (the base as written, with `values`) and the sweep, as plain data of their own."""
    setting_name = result_names(name, entry)[0]
    plain = {key: list(value) if isinstance(value, (list, tuple)) else value for key, value in values.items()}
    return ({**copy.deepcopy(raw["settings"][entry.base]), **plain},
            {"vary": "+".join(values), "settings": [entry.base, setting_name]})


def with_result(text: str, name: str, entry: SearchEntry, values: dict, note: str) -> str:
    """params.yaml's text with the entry's setting and sweep added, or replacing its own earlier ones."""
    setting_name, sweep_name = result_names(name, entry)
    setting, sweep = result_data(_load(text), name, entry, values)
    found = blocks(text)
    edits = [_edit(found["settings"], setting_name, found["settings"][entry.base],
                   _block_text(setting_name, setting, note, found["settings"][entry.base].column)),
             _edit(found["sweeps"], sweep_name, list(found["sweeps"].values())[-1],
                   _block_text(sweep_name, sweep, f"{MARKER}{name}: the search's best against its base",
                               list(found["sweeps"].values())[-1].column))]
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = [new]
    return "".join(lines)


def _edit(section: dict[str, Block], key: str, after: Block, new: str) -> tuple[int, int, str]:
    """(start, end, text): the key's own block replaced, or the text inserted after `after`."""
    own = section.get(key)
    return (own.start, own.end, new) if own else (after.end, after.end, new)


@contextlib.contextmanager
def params_lock(path: Path):
    """Exclusive, for a read-modify-write of params.yaml by a search: on the folder that holds it,
    as the file itself is replaced by each write (a new file, which a second writer would lock apart)."""
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # which releases the lock


def write_result(path: Path, name: str, entry: SearchEntry, values: dict, number: int,
                 value: float) -> tuple[str, str] | None:
    """Write the best trial's values into params.yaml: (the setting's name, the sweep's vary), or None
    where the trial trains as the base does (nothing written). Under the lock the file is read
    afresh (another search may have written it since), its names checked again, and the new text
    checked as a stage would load it, and as holding exactly the two blocks, before it replaces the file."""
    path = Path(path)
    with params_lock(path):
        text = path.read_text(encoding="utf-8")
        raw = _load(text)
        params = parse_params(raw, path)
        check_result_names(text, path, name, entry)
        varied = changed_keys(params, entry, values)
        if not varied:
            return None
        note = f"{MARKER}{name}: trial {number}, {entry.metric} {value:.4f} on {entry.epochs} epoch(s)"
        changed = {key: values[key] for key in varied}
        if not blocks(text)["sweeps"]:
            raise PipelineError(f"{path}: sweeps: holds no sweep written as a block, after which the search's would "
                                f"go: add one (as the shipped file has them); nothing written. Best trial {number}: "
                                f"{values}")
        new = with_result(text, name, entry, changed, note)
        written = _load(new)
        parse_params(written, path)
        setting_name, sweep_name = result_names(name, entry)
        expected = copy.deepcopy(raw)
        expected["settings"][setting_name], expected["sweeps"][sweep_name] = result_data(raw, name, entry, changed)
        if written != expected:
            raise PipelineError(f"{path}: the search's result does not fit the file's layout (settings and sweeps "
                                f"in block style expected); nothing written. Best trial {number}: {values}")
        write_text(path, new)
    return setting_name, written["sweeps"][sweep_name]["vary"]


def _load(text: str):
    import yaml

    from pipeline.params.file import _StrictLoader

    return yaml.load(text, Loader=_StrictLoader)
