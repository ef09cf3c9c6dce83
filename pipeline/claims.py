"""The homework's claims (reports/claims.yaml) judged on kept run records, as the report judges
them on the workspace's runs: the table of docs/results.md is this command's output.

    python -m pipeline.claims                      # every kept run of docs/reports/runs/
    python -m pipeline.claims reports/runs.json    # the runs of this workspace's last report
    python -m pipeline.claims --check              # the claims file alone: valid, or one line naming the problem

A run kept in several files counts once (by its MLflow run id).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.reporting.claims import claims_table, judge_all, read_claims
from pipeline.reporting.homework import read_homework
from pipeline.reporting.records import read_records

KEPT_RUNS = Path("docs/reports/runs")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="*", type=Path,
                        help=f"run records (JSON, as the report writes reports/runs.json); default: {KEPT_RUNS}/*.json")
    parser.add_argument("--claims", type=Path, default=Path("reports/claims.yaml"))
    parser.add_argument("--homework", type=Path, default=Path("reports/homework_results.yaml"))
    parser.add_argument("--check", action="store_true", help="only check the claims file")
    args = parser.parse_args(argv)
    homework = read_homework(args.homework)
    claims, settings = read_claims(args.claims, homework)
    if args.check:
        checks = sum(len(claim.checks) for claim in claims.claims.values())
        print(f"{args.claims}: {len(claims.claims)} claims, {checks} checks, valid")
        return
    paths = args.records or sorted(KEPT_RUNS.glob("*.json"))
    if not paths:
        raise PipelineError(f"{KEPT_RUNS}: no kept run records (*.json) there; name a report's reports/runs.json")
    print(claims_table(claims, judge_all(claims, settings, read_records(paths), homework)))


if __name__ == "__main__":
    cli.run(main)
