"""What else differs between the runs behind a verdict: a verdict compares settings that differ in
one swept value, and their seeds should differ in nothing else. Runs trained in another precision,
by other code, on other data or another kind of machine are said beside the verdict; it stays,
and the reader learns what else may have moved the number."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.provenance.record import MACHINE_KEY, NOT_RECORDED, versions_of

PRECISION_WORDS = {"mixed_bfloat16": "bf16", "mixed_float16": "float16", "float32": "float32"}
EVALUATE_CODE_KEY = "evaluate.code"  # the evaluate stage's code on the training's run (pipeline/evaluate.py)


@dataclass(frozen=True)
class RunProvenance:
    """What made one (setting, seed) run, as its tags and metrics recorded it; NOT_RECORDED for
    what a run made before provenance was tagged lacks."""

    precision: str = NOT_RECORDED
    commit: str = NOT_RECORDED
    code: str = NOT_RECORDED  # commit plus the uncommitted edit's digest (pipeline.provenance.code)
    evaluate_code: str = NOT_RECORDED
    data: str = NOT_RECORDED
    machine: str = NOT_RECORDED
    versions: str = NOT_RECORDED

    @classmethod
    def of(cls, tags: dict[str, str], precision: str | None) -> RunProvenance:
        return cls(precision or NOT_RECORDED, tags.get("git_commit", NOT_RECORDED), tags.get("code", NOT_RECORDED),
                   tags.get(EVALUATE_CODE_KEY, NOT_RECORDED), tags.get("data_md5", NOT_RECORDED),
                   tags.get(MACHINE_KEY, NOT_RECORDED), versions_of(tags) or NOT_RECORDED)

    @property
    def recorded(self) -> bool:
        """Whether the run carries the fingerprint (runs made before it was tagged do not)."""
        return self.machine != NOT_RECORDED


def _distinct(values) -> list[str]:
    return sorted({value for value in values if value != NOT_RECORDED})


def differences(runs: list[RunProvenance], data_groups: list[list[RunProvenance]] | None = None) -> list[str]:
    """What differs between `runs` besides what they are compared on, in words ([] for nothing).
    `data_groups`: the runs that should share their prepared data (a swept color changes the arrays
    by design), where not all of them should."""
    notes = []
    precisions = _distinct(run.precision for run in runs)
    if len(precisions) > 1:
        notes.append(" vs ".join(sorted(PRECISION_WORDS.get(precision, precision) for precision in precisions)))
    if len(_distinct(f"{run.code} {run.evaluate_code}" for run in runs if run.code != NOT_RECORDED)) > 1:
        commits = _distinct(run.commit for run in runs)
        notes.append(f"code differs: {len(commits)} commits" if len(commits) > 1 else "code differs: uncommitted edit")
    if any(len(_distinct(run.data for run in group)) > 1 for group in (data_groups or [runs])):
        notes.append("data differs")
    if len(machines := _distinct(run.machine for run in runs)) > 1:
        notes.append(f"{len(machines)} machine kinds")
    if len(_distinct(run.versions for run in runs)) > 1:
        notes.append("library versions differ")
    # where none recorded it (a store older than these tags), the provenance table says so once
    unrecorded = sum(not run.recorded for run in runs)
    if 0 < unrecorded < len(runs):
        notes.append(f"provenance not recorded for {unrecorded} of {len(runs)} runs")
    return notes


def code_cell(run: RunProvenance) -> str:
    """A run's code for the provenance table: the commit, and its edit's digest where it had one."""
    if run.code == NOT_RECORDED:
        return NOT_RECORDED if run.commit == NOT_RECORDED else f"`{run.commit[:7]}` (edits not recorded)"
    commit, _, edit = run.code.partition("+")
    return f"`{commit[:7]}`" + (f" + uncommitted edit `{edit[:8]}`" if edit else "")
