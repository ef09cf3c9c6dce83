"""params.yaml, read once per stage and validated into the typed objects of
pipeline.params.schema (`python -m pipeline.params` checks and edits the file from the command line).

Every user mistake in the file ends as a :class:`ParamsError` whose message is one line naming
the file, the key path and the problem; :func:`pipeline.common.cli.run` prints it without a traceback.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.params.checks import check_params
from pipeline.params.file import ParamsError, describe, read_yaml, top_level_problem
from pipeline.params.schema import Params
from pipeline.params.searched import check_result_names
from pipeline.params.space import SearchEntry, check_distinct_results, parse_search


def load_params(path: Path | str = "params.yaml", setting: str | None = None) -> Params:
    """Read and fully validate params.yaml; raise ParamsError with a one-line message.

    `setting`: the setting a stage was asked to run, which must exist.
    """
    path = Path(path)
    params = parse_params(read_yaml(path), path)
    if setting is not None and setting not in params.settings:
        raise ParamsError(path, f"settings.{setting}", f"no such setting (known: {', '.join(params.settings)})")
    return params


def parse_params(raw: Any, path: Path | str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(path, "", "expected a mapping of sections at the top level")
    raw = dict(raw)
    search = raw.pop("search", None)  # read by the search tool only: pipeline.params.space
    try:
        params = Params(**raw)
    except ValidationError as exc:
        raise ParamsError(path, *describe(exc.errors(), raw)) from None
    except TypeError as exc:
        # Params(**raw) itself rejects unknown/missing top-level sections before pydantic runs.
        raise ParamsError(path, "", top_level_problem(raw, [f.name for f in fields(Params)] + ["search"])) from exc
    check_params(params, path)
    parse_search(search, params, path)
    return params


def load_search(path: Path | str, name: str) -> tuple[Params, SearchEntry]:
    """params.yaml, fully checked, and its search entry `name` (pipeline.params.space), whose result
    would replace nothing but its own (pipeline.params.searched)."""
    path = Path(path)
    raw = read_yaml(path)
    params = parse_params(raw, path)
    entries = parse_search(raw.get("search"), params, path)
    if name not in entries:
        raise ParamsError(path, f"search.{name}", f"no such search entry (known: {', '.join(entries) or 'none'})")
    check_distinct_results(entries, path)
    check_result_names(path.read_text(encoding="utf-8"), path, name, entries[name])
    return params, entries[name]
