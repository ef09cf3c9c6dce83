"""`make sweep SCHEDULER=tcp://host:8786`: every (setting, seed) that needs training, spread over
the workers of a Dask cluster (other machines, or SLURM/PBS jobs started by dask-jobqueue), into
one MLflow tracking server and one DVC remote; then gathered into this checkout's dvc.lock and
reported.

    python -m pipeline.scaleout.cluster --scheduler ADDRESS [--resources GPU=0.25] [--retries 2]

Each task, on whatever worker takes it: a checkout of its own of this commit (with this
params.yaml) under the worker's local directory; the prepared data restored from the DVC remote;
`dvc repro` of train@<setting>-<seed>, its evaluate (and the setting's plot, for the first seed),
logging to MLFLOW_TRACKING_URI; then `dvc push --run-cache` of what it built. The driver then
pulls the run cache and runs `dvc repro`, which checks every stage's outputs out of it (nothing
trains twice) and writes the report.

Faults: a worker lost mid-task (its machine, its SLURM job) makes Dask run the task again on
another worker (--retries for other crashes); the lost attempt's MLflow run is closed as KILLED.
A stage that fails with its own one-line error (NaN loss, a bad value) fails the sweep at once.
The push comes only after the stages succeeded, and DVC moves each object into place whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.params.load import load_params
from pipeline.scaleout.cluster_setup import scheduler_address, shared_with_workers, task_resources
from pipeline.scaleout.sweep import dvc, gather, stale_after_shared_inputs
from pipeline.tracking.store import SWEEP_TAG_ENV
from pipeline.training.timings import duration


@dataclass(frozen=True)
class Task:
    """One (setting, seed) to build on a worker: everything it needs travels with it."""

    setting: str
    seed: int
    first_seed: bool  # the setting's plot stage runs on its first seed
    repository: str  # what `git clone` reaches from the worker
    commit: str
    params_text: str  # this params.yaml, which may differ from the commit's
    remote_url: str
    tracking_uri: str
    sweep: str

    @property
    def stages(self) -> list[str]:
        run = f"{self.setting}-{self.seed}"
        return [f"train@{run}", f"evaluate@{run}"] + ([f"plot@{self.setting}"] if self.first_seed else [])


@dataclass(frozen=True)
class Outcome:
    run: str
    worker: str
    seconds: float
    error: str | None = None  # the stage's own one-line error: running it again would fail again


def stage_error(output: str) -> str | None:
    """The one-line error a stage printed (`error: ...`), if it failed that way."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else None


class Checkout:
    """On a Dask worker: a checkout of its own of `commit` under the worker's local directory, with
    `params_text` as params.yaml, the shared DVC remote, the machine's DVC cache (one per machine,
    kept across tasks and worker restarts: the data are pulled once) and the run cache pulled;
    removed on leaving. Commands run with the worker's environment's programs first on PATH.

    Uses only the standard library, and DVC and git from that environment: shipped by value
    (cloudpickle) with the task that uses it, so a worker needs the project's environment, not its code."""

    def __init__(self, label: str, repository: str, commit: str, params_text: str, remote_url: str,
                 env: dict[str, str]):
        from distributed import get_worker

        worker = get_worker()
        self.address, self.local = worker.address, Path(worker.local_directory)
        # Dask gives each worker process a directory in the machine's scratch space (--local-directory)
        self.path = self.local / "checkouts" / f"{label}-{uuid.uuid4().hex[:8]}"
        self.bin_dir = Path(sys.executable).parent
        self.env = {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
        self.source = (repository, commit, params_text, remote_url)

    def call(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=self.path if self.path.exists() else None, env=self.env,
                              capture_output=True, text=True)

    def must(self, *command: str) -> None:
        result = self.call(*command)
        if result.returncode != 0:  # the machine or the network: worth another try (Dask retries)
            raise RuntimeError(f"{' '.join(command[:3])} failed on {self.address}: "
                               f"{(result.stderr.strip().splitlines() or ['?'])[-1]}")

    @property
    def dvc(self) -> str:
        return str(self.bin_dir / "dvc")

    def __enter__(self) -> Checkout:
        repository, commit, params_text, remote_url = self.source
        try:
            self.must("git", "clone", "--quiet", "--no-checkout", repository, str(self.path))
            self.must("git", "checkout", "--quiet", commit)
            (self.path / "params.yaml").write_text(params_text, encoding="utf-8")
            self.must(self.dvc, "remote", "add", "--local", "--default", "--force", "sweep", remote_url)
            self.must(self.dvc, "cache", "dir", "--local", str(self.local.parent / "dvc-cache"))
            self.must(self.dvc, "pull", "--quiet", "--run-cache", "--allow-missing")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run_task(task: Task) -> Outcome:
    """On a Dask worker: build one (setting, seed) in a checkout of its own and push the results."""
    started = time.monotonic()
    with Checkout(f"{task.setting}-{task.seed}", task.repository, task.commit, task.params_text, task.remote_url,
                  {"MLFLOW_TRACKING_URI": task.tracking_uri, SWEEP_TAG_ENV: task.sweep}) as checkout:
        result = checkout.call(checkout.dvc, "repro", "--pull", *task.stages)
        if result.returncode != 0:
            error = stage_error(result.stderr)
            if error is None:
                raise RuntimeError(f"dvc repro {task.setting} seed {task.seed} failed on {checkout.address}: "
                                   f"{(result.stderr.strip().splitlines() or ['?'])[-1]}")
            return Outcome(f"{task.setting}-{task.seed}", checkout.address, time.monotonic() - started, error)
        checkout.must(checkout.dvc, "push", "--quiet", "--run-cache", *task.stages)
        push_uncached_outputs(checkout.path, task.stages)
        return Outcome(f"{task.setting}-{task.seed}", checkout.address, time.monotonic() - started)


def push_uncached_outputs(checkout: Path, stages: list[str]) -> None:
    """Push the stages' `cache: false` outputs (metrics, plot data), which DVC keeps in its cache
    for the run cache, but `dvc push --run-cache` leaves behind: it sends the run records only
    (treeverse/dvc#10472), and a run-cache restore elsewhere then finds the outputs missing and
    trains again. Through DVC's own transfer, to the checkout's default remote."""
    from dvc.repo import Repo

    with Repo(str(checkout)) as repo:
        objects = {out.hash_info for name in stages for stage in repo.stage.collect(f"{checkout / 'dvc.yaml'}:{name}")
                   for out in stage.outs if not out.use_cache}
        failed = repo.cloud.push(objects).failed
    if failed:
        raise RuntimeError(f"{len(failed)} outputs of {', '.join(stages)} could not be pushed")


def close_lost_runs(sweep: str) -> list[str]:
    """After the sweep, a run of it still RUNNING lost its worker mid-task (Dask ran the task
    again elsewhere): closed as KILLED, so that every run ends with a status."""
    import mlflow

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    lost = client.search_runs(experiments, filter_string=f"tags.sweep = '{sweep}' and attributes.status = 'RUNNING'")
    for run in lost:
        client.set_tag(run.info.run_id, "failure_reason", "its Dask worker was lost mid-task; the task ran again")
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in lost]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.scaleout.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheduler", required=True, help="the Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--resources", help="what one task takes of a worker's resources, e.g. GPU=0.25 "
                                            "(workers started with --resources GPU=1 then run four at once)")
    parser.add_argument("--retries", type=int, default=2, help="further tries of a task that crashed (default 2)")
    parser.add_argument("--repository", help="where workers `git clone` the code from (default: the "
                                             "`origin` remote, else this checkout's path)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    args.scheduler = scheduler_address(args.scheduler)
    params = load_params(args.params)
    resources = task_resources(args.resources)
    shared = shared_with_workers(args.repository)

    stale, _, line = stale_after_shared_inputs(params)
    # the workers restore the shared inputs from the remote's run cache
    dvc("push", "--quiet", "--run-cache", "--with-deps", *(f"job@{name}" for name in params.settings))
    if stale:
        print(f"{line}, spread over the workers of {args.scheduler}", file=sys.stderr)
        sweep = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        tasks = [Task(name, seed, seed == params.seeds[0], shared.repository, shared.commit,
                      args.params.read_text(encoding="utf-8"), shared.remote_url, shared.tracking_uri, sweep)
                 for name, seed in stale]
        failed = submit_and_wait(args.scheduler, tasks, resources, args.retries)
        lost = close_lost_runs(sweep)
        if lost:
            print(f"sweep: {len(lost)} run(s) of lost workers closed as KILLED", file=sys.stderr)
        if failed:
            raise PipelineError(f"sweep: {failed[0].run} failed on {failed[0].worker}: {failed[0].error}")
        dvc("pull", "--quiet", "--run-cache", "--allow-missing")
    gather(pull=True)
    print(f"sweep: done; MLflow runs in {redact(shared.tracking_uri)}, outputs in {redact(shared.remote_url)}",
          file=sys.stderr)


def submit_and_wait(scheduler: str, tasks: list[Task], resources, retries: int) -> list[Outcome]:
    """Run the tasks on the cluster, showing progress as they finish; the first stage failure
    cancels the rest (running it again would fail again). Returns the failed outcomes."""
    import cloudpickle
    from distributed import Client, as_completed

    # Run as `python -m pipeline.scaleout.cluster`, this module is __main__, which Dask ships by value; a
    # task side moved to a module of its own was pickled by reference in the task graph and failed
    # to load on workers without the project on their path (tried: "Error during deserialization").
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise PipelineError(f"no Dask scheduler answers at {scheduler} ({exc})") from None
    with client:
        futures = [client.submit(run_task, task, key=f"sweep-{task.setting}-{task.seed}-{task.sweep}",
                                 resources=resources, retries=retries, pure=False) for task in tasks]
        done, started = [], time.monotonic()
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # retries used up, or the worker died too often (KilledWorker)
                client.cancel(futures)
                raise PipelineError(f"sweep: {future.key} failed after its retries: "
                                    f"{type(exc).__name__}: {exc}") from None
            if outcome.error:
                client.cancel(futures)
                return [outcome]
            done.append(outcome)
            print(f"sweep: {len(done)}/{len(tasks)} done ({outcome.run} on {outcome.worker}, "
                  f"{duration(outcome.seconds)}; {duration(time.monotonic() - started)} so far)",
                  file=sys.stderr, flush=True)
    return []


if __name__ == "__main__":
    cli.run(main)
