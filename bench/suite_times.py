"""The suite's time per test file, from pytest's JUnit XML report: what to shorten first.

    python -m pytest --junitxml=suite.xml ...
    python -m bench.suite_times suite.xml [before.xml]

Per file: tests, failures and the seconds its tests took (setup, call and teardown, as pytest
times them; with two xdist workers the files' sums add to about twice the wall time). With a
second report (an earlier commit's), both side by side.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def per_file(report: Path) -> dict[str, tuple[int, int, float]]:
    """File -> (tests, failed, seconds)."""
    files: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])
    for case in ET.parse(report).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_x, or tests.test_x.TestClass
        entry = files[(parts[1] if len(parts) > 1 else parts[0]) + ".py"]
        entry[0] += 1
        entry[1] += any(child.tag in ("failure", "error") for child in case)
        entry[2] += float(case.get("time", 0))
    return {name: tuple(entry) for name, entry in files.items()}


def table(after: dict, before: dict | None) -> list[str]:
    names = sorted(after.keys() | (before or {}).keys(), key=lambda n: -(after.get(n, (0, 0, 0))[2]))
    if before is None:
        rows = ["| file | tests | failed | seconds |", "|---|---:|---:|---:|"]
        rows += [f"| {n} | {after[n][0]} | {after[n][1]} | {after[n][2]:.0f} |" for n in names]
        total = [sum(v[i] for v in after.values()) for i in range(3)]
        return [*rows, f"| all | {total[0]} | {total[1]} | {total[2]:.0f} |"]
    rows = ["| file | tests before | s before | tests after | s after |", "|---|---:|---:|---:|---:|"]
    for n in names:
        b, a = before.get(n, (0, 0, 0.0)), after.get(n, (0, 0, 0.0))
        rows.append(f"| {n} | {b[0]} | {b[2]:.0f} | {a[0]} | {a[2]:.0f} |")
    tb, ta = ([sum(v[i] for v in side.values()) for i in (0, 2)] for side in (before, after))
    return [*rows, f"| all | {tb[0]} | {tb[1]:.0f} | {ta[0]} | {ta[1]:.0f} |"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_times", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("before", type=Path, nargs="?")
    args = parser.parse_args(argv)
    print("\n".join(table(per_file(args.report), per_file(args.before) if args.before else None)))


if __name__ == "__main__":
    sys.exit(main())
