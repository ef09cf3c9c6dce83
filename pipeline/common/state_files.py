"""Reading the JSON files that stages leave for each other (job files, run files, normalization)
and for their own next run (resume state, epoch timings, the values `size quick` replaced).

A crash or a hand edit can leave any of them empty, cut short or holding the wrong types: each
read ends then in one line naming the file, what is wrong with it and how to get a good one back,
never in a traceback, and a value of the wrong type is never used (validation is strict: no "3"
for 3, no 3.5 for an integer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pipeline.common.errors import PipelineError


def read_json(path: Path | str, schema: Any, what: str, recover: str) -> Any:
    """The file's JSON validated as `schema` (a type pydantic validates: a dataclass, a
    dict[str, ...]); `what` the file is and `recover` how to get a good one, for the message."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read {what} ({exc.strerror}); {recover}") from None
    try:
        return TypeAdapter(schema).validate_json(text, strict=True)
    except ValidationError as exc:
        raise PipelineError(f"{path}: {what}: {problem(exc)}; {recover}") from None


def problem(exc: ValidationError) -> str:
    """The first thing wrong, in one line: its key path, and the value found there."""
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return f"not valid JSON ({error['msg'].removeprefix('Invalid JSON: ')})"
    key = ".".join(str(part) for part in error["loc"])
    found = repr(error["input"])
    found = found if len(found) <= 60 else found[:57] + "..."
    return f"{key + ': ' if key else ''}{error['msg']} (got {found})"
