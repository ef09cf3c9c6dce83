"""The homework's numbers (reports/homework_results.yaml, which comes with the project): what it
trained under each setting's name and its tables' rows, read and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import state_files
from pipeline.common.errors import PipelineError

_Numbers = Annotated[list[Annotated[float, Strict()]], Field(min_length=4, max_length=4)]


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class _Homework:
    source: str
    settings: dict[str, dict[str, float | str]]  # setting -> the values the homework trained it with
    # dataset -> sweep's key -> setting -> [train loss, train acc, val acc, test acc]
    results: dict[str, dict[str, dict[str, _Numbers]]]


def read_homework(path: Path) -> dict:
    """The homework's numbers (reports/homework_results.yaml), which come with the project."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        TypeAdapter(_Homework).validate_python(raw)
        return raw
    except OSError as exc:
        problem = f"cannot read the homework's numbers ({exc.strerror})"
    except (UnicodeDecodeError, yaml.YAMLError):
        problem = "the homework's numbers are not valid YAML"
    except ValidationError as exc:
        problem = f"the homework's numbers: {state_files.problem(exc)}"
    raise PipelineError(f"{path}: {problem}; it comes with the project: git checkout -- {path}")
