"""The homework's claims (reports/claims.yaml) judged on run records: per check, the measured
difference with its 95 % interval, the test that fits the seeds there are, a verdict, and how many
seeds per setting would decide it.

- Two or more seeds of both settings: Welch's t-test over the seeds (their spread is the noise).
  One seed of one of them: Student's t with the other's spread taken for both. Test accuracy, a
  seed trained for both: McNemar's exact test on that seed's pair of models too (the test set's
  sampling, not the seeds'); with one seed each, that is the test.
- Verdict: *confirmed* (p < 0.05 in the claimed direction; for a claim of no difference, the
  interval within its margin), *contradicted* (p < 0.05 the other way; the interval beyond the
  margin), *within noise*, or *not run* (a setting without results, or trained otherwise than
  the claim is about).
- Seeds needed: per setting, for Welch's test to detect the homework's own difference (a
  no-difference claim: its margin) with 80 % power at α = 0.05, given the seed spread measured
  (statsmodels); where no setting has two seeds, the spread between the homework's two runs of one
  setting. "decided" where the verdict is, "more than 50" past that.

Pure: records in (pipeline/reporting/records.py), rows and Markdown out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.params.file import ParamsError, describe, read_yaml
from pipeline.reporting.confounds import differences
from pipeline.reporting.records import METRICS, RunRecord
from pipeline.reporting.stats import ALPHA, POWER, Comparison, mcnemar, seeds_needed, student, welch

SEEDS_CAP = 50
CLAIMS_METHOD = (
    "Tests: Welch's t-test over the seeds where both settings have two or more; Student's t with the "
    "spread pooled where one has a single seed; McNemar's exact test on each seed both trained (test "
    "accuracy), which is the test with one seed each. *Confirmed*: p < 0.05 in the claimed direction (a "
    "claim of no difference: the interval within its margin); *contradicted*: the other way (beyond the "
    f"margin); *within noise*: neither; *not run*: a setting is missing or trains otherwise. Seeds needed: "
    f"per setting, for Welch's test to detect the homework's own difference (or the margin) with "
    f"{POWER:.0%} power at α = {ALPHA}, given the seed spread measured here or, where named, assumed.")
Metric = Literal[METRICS]
SAME = "same"


# As params.yaml's schema: a typo is an unknown key, and Strict() on each value: no "3" for 3.
_CHECKED = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_Text = Annotated[str, Strict(), Field(min_length=1)]


@pydantic_dataclass(config=_CHECKED)
class Check:
    setting: _Text
    metric: Metric
    direction: Literal["higher", "lower", "same"]


@pydantic_dataclass(config=_CHECKED)
class Claim:
    section: _Text
    quote: _Text
    says: _Text
    reference: _Text
    checks: Annotated[list[Check], Field(min_length=1)]
    table: _Text | None = None
    margin: Annotated[float, Strict(), Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _margin_for_no_difference(self):
        if self.margin is None and any(check.direction == SAME for check in self.checks):
            raise ValueError("a check of direction `same` needs the claim's `margin`")
        return self


@pydantic_dataclass(config=_CHECKED)
class Claims:
    source: _Text
    claims: Annotated[dict[str, Claim], Field(min_length=1)]
    settings: dict[str, dict[str, Annotated[float, Strict()] | Annotated[str, Strict()]]] = field(default_factory=dict)


def read_claims(path: Path, homework: dict) -> tuple[Claims, dict[str, dict]]:
    """The claims file, checked as params.yaml is: a wrong key, or a setting, table or metric that
    does not exist, is one line naming it. With what each setting it names trains with."""
    raw = read_yaml(path)
    try:
        claims = TypeAdapter(Claims).validate_python(raw)
    except ValidationError as exc:
        raise ParamsError(path, *describe(exc.errors(), raw if isinstance(raw, dict) else {})) from None
    known = {**homework["settings"], **claims.settings}
    for key, claim in claims.claims.items():
        for index, name in [("reference", claim.reference)] + [(f"checks.{i}.setting", c.setting)
                                                               for i, c in enumerate(claim.checks)]:
            if name not in known:
                raise ParamsError(path, f"claims.{key}.{index}", f"no setting {name!r} in {path.name}'s settings "
                                  "or the homework's (reports/homework_results.yaml)")
        tables = {table for dataset in homework["results"].values() for table in dataset}
        if claim.table is not None and claim.table not in tables:
            raise ParamsError(path, f"claims.{key}.table", f"no homework table {claim.table!r} (one of "
                              f"{', '.join(sorted(tables))})")
    return claims, known


@dataclass(frozen=True)
class Samples:
    """One setting's records, as a check sees them."""

    records: list[RunRecord]

    def values(self, metric: str) -> list[float]:
        return [record.metrics[metric] for record in self.records]

    @property
    def seeds(self) -> list[int]:
        return [record.seed for record in self.records]


def by_setting(records: list[RunRecord]) -> dict[str, Samples]:
    grouped: dict[str, list[RunRecord]] = {}
    for record in sorted(records, key=lambda r: (r.setting, r.seed)):
        grouped.setdefault(record.setting, []).append(record)
    return {name: Samples(found) for name, found in grouped.items()}


@dataclass(frozen=True)
class Row:
    claim: str
    check: Check
    reference: str
    verdict: str
    seeds: tuple[int, int] = (0, 0)  # of the reference, of the setting
    comparison: Comparison | None = None
    test: str = ""
    mcnemar: tuple[tuple[int, float], ...] = ()  # (seed, p) per seed both trained
    homework: float | None = None  # the homework's own difference, setting minus reference
    needed: str = ""
    spread_note: str = ""
    notes: tuple[str, ...] = ()  # what else differs, smoke runs, what is missing


def _trains_as(records: list[RunRecord], expected: dict) -> str:
    """'' where every record trained with the values the claim is about, else what differs."""
    for record in records:
        wrong = {key: record.values.get(key) for key, value in expected.items() if record.values.get(key) != value}
        if wrong:
            return ", ".join(f"{key} {value}" for key, value in wrong.items())
    return ""


def homework_difference(homework: dict, dataset: str, table: str | None, check: Check, reference: str) -> float | None:
    """The homework's own difference, setting minus reference, in its table (None without one)."""
    rows = homework["results"].get(dataset, {}).get(table or "", {})
    if check.setting not in rows or reference not in rows:
        return None
    index = METRICS.index(check.metric)
    return rows[check.setting][index] - rows[reference][index]


def homework_spread(homework: dict, dataset: str, metric: str) -> tuple[float, str] | None:
    """The spread between the homework's two runs of one setting (a setting in two of its tables
    with different numbers: two trainings), as a standard deviation."""
    index, runs = METRICS.index(metric), {}
    for rows in homework["results"].get(dataset, {}).values():
        for name, numbers in rows.items():
            runs.setdefault(name, set()).add(numbers[index])
    twice = sorted((name, sorted(values)) for name, values in runs.items() if len(values) == 2)
    if not twice:
        return None
    name, (low, high) = twice[0]
    return (high - low) / math.sqrt(2), f"assumed: the homework's two runs of {name}"


def spread(metric: str, samples: list[Samples], dataset_samples: list[Samples], homework: dict,
           dataset: str) -> tuple[float, str] | None:
    """The seed spread (a standard deviation) a check's seeds needed assumes, and where it comes from."""
    measured = [statistics.stdev(s.values(metric)) for s in samples if len(s.records) > 1]
    if measured:
        return math.sqrt(statistics.fmean(sd ** 2 for sd in measured)), "measured"
    others = [statistics.stdev(s.values(metric)) for s in dataset_samples if len(s.records) > 1]
    if others:
        return statistics.median(others), f"assumed: the median of {len(others)} {dataset} setting(s) with 2+ seeds"
    return homework_spread(homework, dataset, metric)


def _verdict(check: Check, comparison: Comparison, margin: float | None) -> str:
    if check.direction == SAME:
        if -margin <= comparison.ci_low and comparison.ci_high <= margin:
            return "confirmed"
        if comparison.ci_low > margin or comparison.ci_high < -margin:
            return "contradicted"
        return "within noise"
    if comparison.p_value >= ALPHA:
        return "within noise"
    return "confirmed" if (comparison.difference > 0) == (check.direction == "higher") else "contradicted"


def _needed(verdict: str, detect: float | None, assumed: tuple[float, str] | None, have: int) -> str:
    """Seeds per setting to detect `detect` (the homework's difference, or a no-difference claim's
    margin) with the spread `assumed`; `have`: the fewer seeds of the two settings so far."""
    if verdict in ("confirmed", "contradicted"):
        return "decided"
    if detect is None or assumed is None:
        return "unknown: no spread measured or assumed"
    needed = seeds_needed(detect, assumed[0], most=SEEDS_CAP)
    if needed > SEEDS_CAP:
        return f"more than {SEEDS_CAP}"
    # as many as there are, and still within noise: a difference the size claimed would have shown
    return f"{needed} (have {have}: the claimed difference is not there)" if needed <= have else str(needed)


def data_groups(records: list[RunRecord]) -> list[list]:
    """The records' provenance grouped by the prepared data they should share (dataset and color: a
    color setting trains on other arrays than a gray one, by design)."""
    groups: dict[tuple, list] = {}
    for record in records:
        groups.setdefault((record.dataset, record.values.get("color")), []).append(record.made_by)
    return list(groups.values())


def judge(name: str, claim: Claim, check: Check, found: dict[str, Samples], expected: dict[str, dict],
          homework: dict) -> Row:
    """One check of a claim on the records found per setting."""
    pair = (claim.reference, check.setting)
    missing = [setting for setting in pair if setting not in found]
    if missing:
        return Row(name, check, claim.reference, "not run", notes=(f"no results for {', '.join(missing)}",))
    for setting in pair:
        if otherwise := _trains_as(found[setting].records, expected[setting]):
            return Row(name, check, claim.reference, "not run", notes=(f"{setting} trains with {otherwise}",))
    reference, setting = (Samples([r for r in found[name].records if check.metric in r.metrics]) for name in pair)
    if lacking := [name for name, kept in zip(pair, (reference, setting)) if not kept.records]:
        return Row(name, check, claim.reference, "not run",
                   notes=(f"{check.metric} not kept for {', '.join(lacking)}",))
    counts = (len(reference.records), len(setting.records))
    ours, theirs = setting.values(check.metric), reference.values(check.metric)
    per_seed = []
    if check.metric == "test_accuracy":
        right = {(r.setting, r.seed): r.correctness() for r in reference.records + setting.records}
        for seed in sorted(set(reference.seeds) & set(setting.seeds)):
            a, b = right[(check.setting, seed)], right[(claim.reference, seed)]
            if a is not None and b is not None and len(a) == len(b):
                per_seed.append((seed, mcnemar(a, b)))
    if min(counts) > 1:
        comparison, test = welch(ours, theirs), f"Welch, {counts[1]} vs {counts[0]} seeds"
    elif max(counts) > 1:
        comparison, test = student(ours, theirs), f"Student, {counts[1]} vs {counts[0]} seeds (spread pooled)"
    elif per_seed:
        (seed, comparison), test = per_seed[0], f"McNemar, seed {per_seed[0][0]}"
    else:
        comparison, test = None, "none: one seed each" + (", no predictions kept" if check.metric == "test_accuracy"
                                                          else "")
    theirs_difference = homework_difference(homework, setting.records[0].dataset, claim.table, check, claim.reference)
    detect = claim.margin if check.direction == SAME else theirs_difference
    verdict = "within noise" if comparison is None else _verdict(check, comparison, claim.margin)
    dataset = setting.records[0].dataset
    assumed = spread(check.metric, [reference, setting],
                     [s for s in found.values() if s.records[0].dataset == dataset], homework, dataset)
    runs = reference.records + setting.records
    notes = tuple(differences([r.made_by for r in runs], data_groups(runs)))
    if any(r.smoke for r in runs):
        notes = ("smoke run: not yet meaningful", *notes)
    return Row(name, check, claim.reference, verdict, counts, comparison, test,
               tuple((seed, result.p_value) for seed, result in per_seed), theirs_difference,
               _needed(verdict, detect, assumed, min(counts)),
               "" if assumed is None or assumed[1] == "measured" else assumed[1], notes)


def judge_all(claims: Claims, expected: dict[str, dict], records: list[RunRecord], homework: dict) -> list[Row]:
    found = by_setting(records)
    return [judge(name, claim, check, found, expected, homework)
            for name, claim in claims.claims.items() for check in claim.checks]


def _amount(metric: str, value: float) -> str:
    """A difference in the metric's unit: percentage points of accuracy, or loss itself."""
    return f"{value * 100:+.2f} pp" if metric.endswith("accuracy") else f"{value:+.4f}"


def _p(value: float) -> str:
    return f"{value:.2g}"


def claims_table(claims: Claims, rows: list[Row]) -> str:
    """The claims section's table and, below it, each claim in the homework's words."""
    lines = ["| claim | setting vs reference | metric | claimed | homework Δ | ours Δ [95 % CI] | test, p | "
             "McNemar p per seed | seeds | verdict | seeds needed per setting |", "|" + "---|" * 11]
    for row in rows:
        check, metric = row.check, row.check.metric
        claimed = check.direction
        if check.direction == SAME:
            claimed = f"same (±{_amount(metric, claims.claims[row.claim].margin)[1:]})"
        homework = "–" if row.homework is None else _amount(metric, row.homework)
        ours = "–" if row.comparison is None else (
            f"{_amount(metric, row.comparison.difference)} [{_amount(metric, row.comparison.ci_low)}, "
            f"{_amount(metric, row.comparison.ci_high)}]")
        test = row.test + ("" if row.comparison is None else f", p = {_p(row.comparison.p_value)}")
        per_seed = ", ".join(f"{seed}: {_p(p)}" for seed, p in row.mcnemar) or "–"
        seeds = "–" if row.verdict == "not run" and not row.seeds[0] else f"{row.seeds[1]} vs {row.seeds[0]}"
        verdict = row.verdict + (f" ({'; '.join(row.notes)})" if row.notes else "")
        needed = row.needed + (f" ({row.spread_note})" if row.spread_note else "")
        lines.append(f"| {row.claim} | `{check.setting}` vs `{row.reference}` | {metric} | {claimed} | {homework} | "
                     f"{ours} | {test or '–'} | {per_seed} | {seeds} | {verdict} | {needed or '–'} |")
    lines += ["", "The claims, in the homework's words:", ""]
    lines += [f"- **{name}** ({claim.section}): 「{claim.quote}」 — {claim.says}."
              for name, claim in claims.claims.items()]
    return "\n".join(lines)

