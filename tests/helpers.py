"""What the tests share: the project copied into a scratch checkout, the commands run in it, servers
on free ports, and reading its MLflow store."""

from __future__ import annotations

import ast
import atexit
import contextlib
import functools
import gc
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# What a user's checkout holds; data, caches and the tracking store are not copied.
PROJECT_FILES = ("dvc.yaml", "params.yaml", "pipeline", "reports/homework_results.yaml", "reports/claims.yaml",
                 ".gitignore", ".dvc/config",
                 ".dvc/.gitignore", ".dvcignore", "mlruns/.gitkeep")


# params.yaml as shipped, the values the tests assert on. The workspace's params.yaml is the user's,
# in the working tree and in their commits: `make quick` resizes it, the README's next step commits
# that, a search or an edit adds to it. So no test reads it (nor the workspace's dvc.lock, mlruns/,
# registry/ or .dvc/tmp); tests/test_params.py holds this copy equal to the shipped file on a fresh
# clone (CI).
SHIPPED_PARAMS = REPO / "tests" / "shipped_params.yaml"


@functools.cache
def shipped_params_text() -> str:
    return SHIPPED_PARAMS.read_text(encoding="utf-8")


def shipped_params() -> dict:
    return yaml.safe_load(shipped_params_text())


def project_env(**extra: str) -> dict[str, str]:
    """The environment a stage runs in: the venv first on PATH (DVC spawns `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


# Seconds for a test that uses `pipeline_run`, whose time may include building it (pyproject.toml's
# `timeout` is for the others).
PIPELINE_RUN_TIMEOUT = 900
# Seconds kept back from a test's time limit: a wait bounded by `seconds_left` runs out that much
# before pytest-timeout would stop the test, which then fails by its own message and has this long
# to stop what it started (a clean-up wait takes CLEANUP_SECONDS at most, never `seconds_left`).
CLEANUP_SECONDS = 20
_test_deadline: float | None = None


def start_test_clock(limit: float | None) -> None:
    """Called by conftest.py as each test starts, with its pytest-timeout limit (None: none)."""
    global _test_deadline
    _test_deadline = None if not limit else time.monotonic() + limit


def seconds_left(at_most: float) -> float:
    """A bound for one wait in a test: `at_most`, or less, so that it ends before the test's own limit."""
    if _test_deadline is None:
        return at_most
    # at least a second: a wait given no time at all would fail without looking once
    return max(1.0, min(at_most, _test_deadline - time.monotonic() - CLEANUP_SECONDS))


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900):
    """`cmd` to its end, within the test's time left; on time out, it and every process it started
    (DVC's stages, pytest's workers) are killed, and the test fails naming it."""
    bound, named = seconds_left(timeout), " ".join(map(str, cmd))
    process = subprocess.Popen(cmd, cwd=cwd, env=env or project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=bound)
    except BaseException as stopped:  # out of time, or the test run stopped (pytest-timeout, Ctrl-C)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=CLEANUP_SECONDS)  # a process outside the group may hold the pipe
        if isinstance(stopped, subprocess.TimeoutExpired):
            said = f"{stdout[-2000:]}\n{stderr[-2000:]}"
            raise AssertionError(f"{named} did not finish in {bound:.0f} s:\n{said}") from None
        raise
    result = subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{named} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def copy_project(dest: Path, params: dict | None = None, source: Path = REPO) -> Path:
    """A fresh git+DVC checkout of the pipeline files of the project in `source` in `dest`."""
    for name in PROJECT_FILES:
        src, dst = source / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    elif source == REPO:
        (dest / "params.yaml").write_text(shipped_params_text())
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], dest)
    return dest


@functools.cache
def shipped_checkout() -> Path:
    """A scratch checkout of the project with the shipped params.yaml, for the tests that read the
    stages DVC expands from dvc.yaml (one per setting of params.yaml), which in the workspace would
    be the user's settings."""
    directory = Path(tempfile.mkdtemp(prefix="hw2-shipped-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return copy_project(directory)


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True):
    return run([str(VENV_BIN / "dvc"), *args], repo, env=env, check=check)


def job_file(repo: Path, out: Path, setting: str = "mnist-k3-s1", params: Path | None = None,
             data: Path | None = None, check: bool = True):
    """Run the job stage of one setting of the project in `repo`, writing `out`/job.json."""
    data = data or repo / "data" / "prepared" / ("mnist" if setting.startswith("mnist") else "cifar10")
    return run([sys.executable, "-m", "pipeline.job", setting, str(data), str(out / "job.json"),
                "--params", str(params or repo / "params.yaml")], repo, check=check)


def job_without_data(directory: Path, setting: str = "mnist-k3-s1") -> tuple[Path, Path]:
    """(a fresh checkout in `directory`, the folder of a job file for `setting` there) without
    running the pipeline: its data is one placeholder array, enough for a train stage that must
    stop before it loads TensorFlow or any data (an unavailable or refusing tracking store)."""
    import numpy as np

    repo = copy_project(directory / "project", tiny_params())
    data = directory / "data"
    data.mkdir()
    np.save(data / "x_train.npy", np.zeros((1, 1), np.float32))
    out = directory / "out"
    job_file(repo, out, setting, data=data)
    return repo, out


def train_command(out: Path, seed: int = 0) -> list[str]:
    """The train stage's command for the job in `out`/job.json, writing its outputs under `out`."""
    return [sys.executable, "-m", "pipeline.train", str(out / "job.json"), str(seed), str(out / "m.keras"),
            str(out / "run.json"), str(out / "metrics.json"), str(out / "h.csv")]


def run_stage(main, argv=()) -> tuple[int, str]:
    """(exit status, stderr) of a stage's `main` (or any reader) run through cli.run, as its
    process would, in this one."""
    from pipeline.common import cli

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.run(main, list(argv))
            status = 0
        except SystemExit as exc:
            status = exc.code
        finally:
            gc.unfreeze()  # what a finished stage freezes is left to its exit; this process goes on
    return status, stderr.getvalue()


def assert_one_line_naming(path: Path | str, status: int, stderr: str) -> None:
    """A failure the user can act on: non-zero, and one line on stderr that starts with the path."""
    assert status != 0, stderr
    assert stderr.startswith(f"error: {path}: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def tethered(command: list[str], **popen) -> subprocess.Popen:
    """A server started through tests/tether.py, leader of a process group of its own: it dies with
    this test run, also one killed before its clean-up ran. Stop it with os.killpg(process.pid, ...)."""
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "tether.py"), *command], start_new_session=True,
                            **popen)


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, what: str, timeout: float = 90, log=None) -> None:
    """Until `url`/health answers; fails naming `what` (and the end of its `log`, a file) when the
    server exits first or time runs out."""
    deadline = time.monotonic() + seconds_left(timeout)
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                said = ""
                if log is not None:
                    log.seek(0)
                    said = log.read()[-2000:]
                raise AssertionError(f"{what} did not answer {url}/health: {said}") from None
            time.sleep(0.5)


def stop_service(server: subprocess.Popen) -> None:
    """SIGTERM to a server started by `tethered` and everything it started, as a user stops one."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@contextlib.contextmanager
def http_service(command: list[str], port: int, what: str, cwd: Path | None = None, timeout: float = 90,
                 env: dict[str, str] | None = None):
    """Run a server (`command`, listening on 127.0.0.1:`port`) for the block, once its /health
    answers; stop its whole process group afterwards."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty server never blocks on it
        server = tethered(command, cwd=cwd, env=env or project_env(), stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            wait_until_healthy(url, server, what, timeout, log)
            yield url
        finally:
            stop_service(server)


def mlflow_server(port: int, store: Path, *options: str) -> list[str]:
    """`mlflow server` on 127.0.0.1:`port` with its own SQLite store and artifact root in `store`."""
    return [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{store / 'server.db'}",
            "--artifacts-destination", str(store / "server-artifacts"), *options]


def wait_for_queue(repo: Path, env: dict[str, str], timeout: float = 600) -> str:
    """`dvc queue status` once nothing is Queued or Running."""
    timeout = seconds_left(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status", env=env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(2)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def tiny_params() -> dict:
    """The shipped params.yaml cut down to a few settings and epochs, for fixture data."""
    params = shipped_params()
    params["train"].update(epochs=2, batch_size=32)
    params["seeds"] = [0]
    return keep_settings(params, ("mnist-k3-s1", "mnist-k3-s1-l2", "cifar10-k3-s1", "cifar10-k3-s1-rgb"))


def keep_settings(params: dict, keep) -> dict:
    """params with only these settings, and its sweeps and search entries cut to them."""
    params["settings"] = {name: params["settings"][name] for name in keep}
    params["sweeps"] = {name: {**sweep, "settings": [s for s in sweep["settings"] if s in keep]}
                        for name, sweep in params["sweeps"].items() if set(sweep["settings"]) & set(keep)}
    if "search" in params:  # a search entry starts from its base setting
        params["search"] = {name: entry for name, entry in params["search"].items() if entry["base"] in keep}
    return params


def estimated(output: str) -> list[str]:
    """The settings `python -m pipeline.training.estimate` named in `output`, one line each under its headline."""
    return re.findall(r"^  (\S+): .*\(.*from (?:its last training here|a probe)\)$", output, re.MULTILINE)


def mlflow_client(repo: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")


def runs_by_setting(repo: Path, seed: int = 0) -> dict[str, object]:
    """Each setting's training run with this seed (not its parent)."""
    client = mlflow_client(repo)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments],
                              filter_string=f"tags.kind = 'seed' and tags.seed = '{seed}'")
    return {run.data.tags["setting"]: run for run in runs}


def seed_path(kind: str, setting: str, seed: int = 0, suffix: str = ".json") -> Path:
    """Where a (setting, seed) stage output lives: seed_path("runs", "mnist-k3-s1")."""
    return Path(kind) / setting / f"seed{seed}{suffix}"


def params_file(directory: Path, **train) -> Path:
    """tiny_params() with some train values changed, written to `directory`/params.yaml."""
    params = tiny_params()
    params["train"].update(train)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def store_env(directory: Path) -> dict[str, str]:
    """The environment of a fresh store of the test's own, created before training starts: the
    test polls it while training writes, and two processes creating one SQLite schema race."""
    env = project_env(MLFLOW_TRACKING_URI=f"sqlite:///{directory / 'store.db'}")
    subprocess.run([sys.executable, "-m", "pipeline.tracking", "init"], env=env, check=True, capture_output=True,
                   timeout=seconds_left(120))
    return env


def wait_for_epochs(client, process, epochs: int, timeout: float = 120, exclude=()):
    """The training process's run (the newest, not in `exclude`), once it has logged `epochs` epochs."""
    deadline = time.monotonic() + seconds_left(timeout)
    while time.monotonic() < deadline and process.poll() is None:
        runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if r.info.run_id not in exclude]
        if runs and len(client.get_metric_history(runs[0].info.run_id, "loss")) >= epochs:
            return runs[0]
        time.sleep(0.2)
    stderr = process.communicate()[1][-3000:] if process.poll() is not None else "(still running)"
    raise AssertionError(f"training never logged {epochs} epoch(s): {stderr}")


def reap(process) -> None:
    """Never leave a training process behind to disturb the next test (nor, where it leads a process
    group of its own, anything it started)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.communicate()


def imported_modules(path: Path) -> set[str]:
    """Project modules (as 'pipeline/x.py' or 'pipeline/pkg/x.py') that the module at `path` imports
    anywhere in it. A package's __init__.py holds only its docstring (a test below holds that), so
    importing through a package runs no code of it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            base = node.module.replace(".", "/")
            found.add(f"{base}.py")
            found.update(f"{base}/{alias.name}.py" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.replace(".", "/") + ".py" for alias in node.names
                         if alias.name.startswith("pipeline."))
    return {module for module in found if (REPO / module).is_file()}


@contextlib.contextmanager
def dask_cluster(directory: Path, workers: int, **worker_env: str):
    """A scheduler and `workers` workers on 127.0.0.1, each worker with a local directory of its
    own (a machine of its own) and `worker_env` in its environment, one task at a time; every
    process group stopped afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = project_env(**worker_env)
    processes = [tethered([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                           "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    machines = []
    try:
        for index in range(workers):
            machine = directory / f"machine{index}"
            machine.mkdir()
            machines.append(machine)
            processes.append(tethered(
                [str(VENV_BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--resources", "slot=1", "--local-directory", str(machine), "--no-dashboard"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield address, machines, processes[1:]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
