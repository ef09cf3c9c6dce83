"""What a search writes into params.yaml, as text: where each setting and sweep lies in the file,
which of them a search wrote, and the check that a search's result replaces nothing else.

A search marks what it writes by the comment on the key line (`mnist-k3-s1-searched:  # make search
NAME=mnist-k3: ...`): a setting or sweep whose key line carries its entry's marker is its own earlier
result, updated in place; any other one of the name is the user's, and the entry is refused before
a trial trains (pipeline.params.load.load_search). A user who takes a result over as their own
deletes the comment; the search then leaves it alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.params.file import ParamsError
from pipeline.params.space import SearchEntry, result_names

MARKER = "make search NAME="  # starts the comment a search writes on the key line of its setting and sweep
_MARKED = re.compile(r"#\s*" + re.escape(MARKER) + r"([^\s:]+):")
SECTIONS = ("settings", "sweeps")  # the sections a search writes to


@dataclass(frozen=True)
class Block:
    """A setting's or sweep's lines in the file: lines[start:end], its key at column `column`."""

    start: int
    end: int
    column: int


def blocks(text: str) -> dict[str, dict[str, Block]]:
    """Each setting's and sweep's block of lines, by section and name. A block ends at its last line
    of content: blank lines and comments at or left of its key's column, which introduce what
    follows (the next setting, or the next section), are not its own."""
    from ruamel.yaml import YAML

    data = YAML().load(text)
    lines = text.splitlines(keepends=True)
    tops = sorted(data.lc.key(key)[0] for key in data)
    found = {}
    for section in SECTIONS:
        node, top = data[section], data.lc.key(section)[0]
        section_end = next((line for line in tops if line > top), len(lines))
        starts = [node.lc.key(key) for key in node]
        found[section] = {}
        for key, (start, column), following in zip(node, starts, [s for s, _ in starts[1:]] + [section_end]):
            end = following
            while end > start + 1 and _introduces_next(lines[end - 1], column):
                end -= 1
            found[section][key] = Block(start, end, column)
    return found


def _introduces_next(line: str, column: int) -> bool:
    stripped = line.lstrip()
    return not stripped or (stripped.startswith("#") and len(line) - len(stripped) <= column)


def writer(text: str, block: Block) -> str | None:
    """The search entry whose marker the block's key line carries, if any."""
    found = _MARKED.search(text.splitlines()[block.start])
    return found.group(1) if found else None


def check_result_names(text: str, path: Path | str, name: str, entry: SearchEntry) -> None:
    """Refuse the entry if the setting or sweep it writes exists and is not its own earlier result."""
    found = blocks(text)
    for section, kind, written in zip(SECTIONS, ("setting", "sweep"), result_names(name, entry)):
        block = found[section].get(written)
        if block is not None and writer(text, block) != name:
            raise ParamsError(path, f"search.{name}", f"its result would replace the {kind} {written!r} (not written "
                              f"by this search): name its result apart with `result: <name>` in search.{name}")
