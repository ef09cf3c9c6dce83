"""Each (setting, seed) run as one record: what it trained with, its final numbers, its test
predictions' correctness and what made it. The report writes the workspace's as JSON
(reports/runs.json); a copy kept under docs/reports/runs/ keeps them after the workspace moves on,
and `python -m pipeline.claims` judges the homework's claims on every kept file at once."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.common import state_files
from pipeline.common.errors import PipelineError
from pipeline.params.schema import is_smoke_run
from pipeline.reporting.confounds import RunProvenance
from pipeline.reporting.results import COLUMNS, Result

METRICS = tuple(column for column, _ in COLUMNS)
_Fraction = Annotated[float, Field(ge=0)]


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class RunRecord:
    setting: str
    dataset: str
    seed: int
    run_id: str
    epochs: Annotated[int, Field(ge=1)]
    subset: Annotated[float, Field(gt=0, le=1)]
    values: dict[str, int | float | str | list[float]]  # what it trained with, by key (kernel, dropout, ...)
    metrics: dict[Literal[METRICS], _Fraction]  # METRICS' final values (a kept report may lack some)
    provenance: dict[str, str]  # RunProvenance's fields
    correct: str | None = None  # per test image, right or not: np.packbits, base64 (None: not kept)
    test_images: int | None = None
    source: str = ""  # where a kept record's numbers come from, when not from a report's runs.json

    @property
    def smoke(self) -> bool:
        return is_smoke_run(self.epochs, self.subset)

    @property
    def made_by(self) -> RunProvenance:
        return RunProvenance(**self.provenance)

    def correctness(self) -> np.ndarray | None:
        if self.correct is None or self.test_images is None:
            return None
        return np.unpackbits(np.frombuffer(base64.b64decode(self.correct), np.uint8))[:self.test_images].astype(bool)


def records_of(result: Result) -> list[RunRecord]:
    """A setting's runs as records (the report's results, pipeline/reporting/results.py)."""
    records = []
    for run in result.runs:
        packed = base64.b64encode(np.packbits(run.correct.astype(bool)).tobytes()).decode("ascii")
        records.append(RunRecord(
            setting=result.name, dataset=result.setting.dataset, seed=run.seed, run_id=run.run_id,
            epochs=result.epochs, subset=result.subset, values=dict(result.values),
            metrics={column: float(run.value(column)) for column in METRICS},
            provenance=asdict(run.provenance), correct=packed, test_images=len(run.correct)))
    return records


def dump(records: list[RunRecord]) -> str:
    return json.dumps([asdict(record) for record in records], indent=1, ensure_ascii=False) + "\n"


def read_records(paths: list[Path]) -> list[RunRecord]:
    """The records of these files, each run once (a run kept in two files is the same run)."""
    adapter, found = TypeAdapter(list[RunRecord]), {}
    for path in paths:
        recover = "it is a copy of a report's reports/runs.json: copy it again"
        try:
            records = adapter.validate_json(path.read_bytes())
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read the kept runs ({exc.strerror})") from None
        except ValidationError as exc:
            raise PipelineError(f"{path}: the kept runs: {state_files.problem(exc)}; {recover}") from None
        for record in records:
            found.setdefault(record.run_id, record)
    return list(found.values())
