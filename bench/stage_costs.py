"""Where one setting's `dvc repro` spends its wall time besides training: the fixed cost of each
stage (interpreter start, imports and exit, TensorFlow, MLflow, model build, run set-up, logging, test
evaluation, figures, report) against the training itself, at `make quick`'s size.

Each project given (default: this checkout) is copied to a scratch checkout with one setting and
one seed at the quick size (params.yaml's other values kept), its pipeline run once to warm up,
then, alternating between projects each round: one forced `dvc repro` of the setting's train,
evaluate, plot and the report (its wall time), and each of those stage commands on its own under
a timer that wraps the pipeline's functions (the phases). Medians over rounds; nothing in the
projects themselves is changed.

    python -m bench.stage_costs                               # fixture data (see --mirror)
    python -m bench.stage_costs --mirror DIR --setting cifar10-k3-s1 --rounds 3
    python -m bench.stage_costs --project /tmp/before --project .   # before/after a change, A B A B
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# (module, function) -> phase; a name a project lacks is skipped. Calls nest: a phase's time is
# its own, less the phases timed inside it.
TIMED = {
    ("pipeline.model.runtime", "load_tensorflow"): "TensorFlow import",
    ("pipeline.train", "open_run"): "MLflow run set-up",
    ("pipeline.train", "fit"): "training",
    ("pipeline.train", "build_compiled"): "model build",
    ("pipeline.train", "load_split"): "data load",
    ("pipeline.train", "log_data_inputs"): "input and model logging",
    ("pipeline.train", "log_model"): "input and model logging",
}
STAGE_PHASE = {"train": "train: the rest (model save, metrics files)", "evaluate": "test evaluation",
               "plot": "figures", "report": "report"}


def run_timed(module: str, argv: list[str], out: Path) -> None:
    """Run a stage's main with its functions of TIMED wrapped; write {phase: seconds} to `out`."""
    sys.path.insert(0, os.getcwd())
    spent: dict[str, float] = {}
    inside: list[float] = []  # time spent in timed calls nested in the one running

    def timed(phase, function):
        def wrapper(*args, **kwargs):
            inside.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                total = time.perf_counter() - started
                spent[phase] = spent.get(phase, 0.0) + total - inside.pop()
                if inside:
                    inside[-1] += total
        return wrapper

    stage = importlib.import_module(module)
    for (owner, name), phase in TIMED.items():
        # the stage module, and the defining one if the stage imported it (timing never imports)
        for holder in {stage, sys.modules.get(owner, stage)}:
            if hasattr(holder, name):
                setattr(holder, name, timed(phase, getattr(holder, name)))
    started = time.perf_counter()
    import mlflow  # noqa: F401  (every stage timed here imports it; its own line in the table)

    spent["MLflow import"] = time.perf_counter() - started
    from pipeline.common import cli

    started = time.perf_counter()
    cli.run(stage.main, argv)  # as `python -m` runs it: the entry point's exit path belongs to the stage's cost
    spent[STAGE_PHASE[module.rsplit(".", 1)[1]]] = time.perf_counter() - started - sum(
        v for k, v in spent.items() if k != "MLflow import")
    out.write_text(json.dumps(spent))


def scratch_project(source: Path, dest: Path, setting: str) -> Path:
    """A git + DVC checkout of `source`'s pipeline with one setting, one seed, at the quick size."""
    from pipeline.params.schema import SIZES
    from tests.helpers import copy_project

    params = yaml.safe_load((source / "params.yaml").read_text(encoding="utf-8"))
    params["settings"] = {setting: params["settings"][setting]}
    params["sweeps"] = {}
    params["seeds"] = params["seeds"][:1]
    for key, value in SIZES["quick"].items():
        section, name = key.split(".")
        params[section][name] = value
    return copy_project(dest, params, source)


def stage_commands(project: Path, targets: list[str]) -> dict[str, list[str]]:
    """Each target stage's command line, as DVC resolved it from dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        # DVC resolves a bare stage name against the current directory's dvc.yaml, not the repo's
        return {target: shlex.split(repo.stage.collect(f"{project / 'dvc.yaml'}:{target}")[0].cmd)
                for target in targets}


def one_round(project: Path, targets: list[str], env: dict) -> dict[str, float]:
    """One forced `dvc repro` of the targets, then each stage alone under the phase timer."""
    dvc = str(Path(sys.executable).parent / "dvc")
    started = time.perf_counter()
    subprocess.run([dvc, "repro", "--force", "--single-item", *targets], cwd=project, env=env, check=True,
                   capture_output=True)
    row = {"dvc repro (all)": time.perf_counter() - started}
    stages_wall = 0.0
    for target, command in stage_commands(project, targets).items():
        module, argv = command[2], command[3:]  # python -m <module> <args...>
        with tempfile.NamedTemporaryFile(suffix=".json") as phases:
            started = time.perf_counter()
            finished = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phases", phases.name, module,
                                       *argv], cwd=project, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if finished.returncode:
                raise SystemExit(f"{target} failed in {project}: {finished.stderr.strip().splitlines()[-1:]}")
            spent = json.loads(Path(phases.name).read_text())
        stages_wall += wall
        stage = target.split("@")[0]
        row[f"{stage}: interpreter start, project imports, exit"] = wall - sum(spent.values())
        for phase, seconds in spent.items():
            key = phase if phase in ("training", *STAGE_PHASE.values()) else f"{stage}: {phase}"
            row[key] = row.get(key, 0.0) + seconds
    row["DVC (hashing, lock, scheduling)"] = row["dvc repro (all)"] - stages_wall
    return row


def table(rows_by_project: dict[str, list[dict[str, float]]]) -> str:
    names = list(rows_by_project)
    phases = list(dict.fromkeys(k for rows in rows_by_project.values() for row in rows for k in row))
    medians = {p: {k: statistics.median(row.get(k, 0.0) for row in rows) for k in phases}
               for p, rows in rows_by_project.items()}
    lines = ["| phase | " + " | ".join(f"{n}: s | {n}: share" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for phase in phases:
        cells = []
        for name in names:
            total = medians[name]["dvc repro (all)"]
            cells += [f"{medians[name][phase]:.2f}", f"{100 * medians[name][phase] / total:.0f} %"]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    for name in names:
        rest = medians[name]["dvc repro (all)"] - medians[name].get("training", 0.0)
        lines.append(f"\n{name}: not training {rest:.1f} s of {medians[name]['dvc repro (all)']:.1f} s "
                     f"({100 * rest / medians[name]['dvc repro (all)']:.0f} %)")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--phases"]:  # inside one stage's process
        return run_timed(argv[2], argv[3:], Path(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m bench.stage_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--setting", default="mnist-k3-s1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mirror", type=Path, help="offline mirror (default: PIPELINE_DATA_MIRROR, else fixture data)")
    args = parser.parse_args(argv)
    projects = args.project or [Path.cwd()]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        mirror = args.mirror or (Path(os.environ["PIPELINE_DATA_MIRROR"]) if os.environ.get("PIPELINE_DATA_MIRROR")
                                 else None)
        if mirror is None:
            from tests.datasets import write_mirror

            mirror = write_mirror(work / "mirror")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
        env.update(PIPELINE_DATA_MIRROR=str(mirror), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
        scratch = {f"{i}:{p.resolve().name}": scratch_project(p.resolve(), work / f"p{i}", args.setting)
                   for i, p in enumerate(projects)}
        seed = yaml.safe_load((next(iter(scratch.values())) / "params.yaml").read_text())["seeds"][0]
        targets = [f"train@{args.setting}-{seed}", f"evaluate@{args.setting}-{seed}", f"plot@{args.setting}", "report"]
        for project in scratch.values():
            subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=project, env=env, check=True,
                           capture_output=True)
        rows: dict[str, list] = {name: [] for name in scratch}
        for round_number in range(args.rounds):
            for name, project in scratch.items():
                rows[name].append(one_round(project, targets, env))
                seconds = rows[name][-1]["dvc repro (all)"]
                print(f"round {round_number + 1}/{args.rounds} {name}: dvc repro {seconds:.1f} s", file=sys.stderr,
                      flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
