"""`make search` (pipeline/search/study.py, issue 35): a tiny Optuna study on fixture data runs,
prunes, survives a SIGKILL without losing or repeating a finished trial, writes a setting and a
sweep that load, and never reads the test split; each bad search entry is one line."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.params.file import ParamsError
from pipeline.params.load import load_params, parse_params
from pipeline.search.trial import HOLD_TRIALS_FROM_ENV
from tests.helpers import (
    assert_one_line_naming,
    copy_project,
    dvc,
    project_env,
    run,
    run_stage,
    seconds_left,
    tiny_params,
)

ENTRY = {"base": "mnist-k3-s1", "trials": 3, "epochs": 3, "subset": 1.0, "metric": "val_accuracy", "seed": 0,
         "pruner": "median", "startup_trials": 1,
         "space": {"learning_rate": {"low": 0.0000001, "high": 0.01, "log": True},
                   "batch_size": {"choices": [32, 64]}}}


def search_params(entry: dict | None = None) -> dict:
    params = tiny_params()
    params["search"] = {"tiny": copy.deepcopy(entry or ENTRY)}
    return params


def study_command() -> list[str]:
    return [sys.executable, "-m", "pipeline.search.study", "tiny"]


def held_from(trial: int) -> dict[str, str]:
    """The environment in which trial `trial` and later ones hold after their first epoch until stopped."""
    return project_env(**{HOLD_TRIALS_FROM_ENV: str(trial)})


def wait_until_running(project: Path, search, count: int = 1, trial: int | None = None) -> None:
    """Until `trial` (or any `count` trials) is training in the study, while the search runs."""
    bound = seconds_left(200)  # a held trial starts within seconds; this is for a loaded machine
    deadline = time.monotonic() + bound
    while not (trial in running_trials(project) if trial is not None else len(running_trials(project)) >= count):
        if search.poll() is not None:
            raise AssertionError(f"the search ended first: {search.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no trial held within {bound:.0f} s"
        time.sleep(0.1)


def enqueue(repo: Path, *learning_rates: float) -> None:
    """Trials whose values the test chooses (Optuna's own enqueue_trial): a learning rate of 1e-7
    learns nothing in 3 epochs, and the median pruner must stop it after its first."""
    import optuna

    from pipeline.params.load import load_search
    from pipeline.search.storage import open_study

    params, entry = load_search(repo / "params.yaml", "tiny")
    (repo / ".dvc" / "tmp" / "search").mkdir(parents=True, exist_ok=True)
    study, _, _ = open_study("tiny", entry, params, repo)
    for rate in learning_rates:
        study.enqueue_trial({"learning_rate": rate, "batch_size": 32})
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def running_trials(repo: Path) -> set[int]:
    """Numbers of the trials RUNNING in the study's storage with their MLflow run started (read by
    SQL: no second writer)."""
    import sqlite3

    db = repo / ".dvc" / "tmp" / "search" / "tiny.db"
    if not db.exists():  # the study not created yet
        return set()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as connection:
        try:
            return {number for (number,) in connection.execute(
                "SELECT number FROM trials JOIN trial_user_attributes USING (trial_id) WHERE state = 'RUNNING' "
                "AND key = 'mlflow_run'")}
        except sqlite3.OperationalError as exc:  # its tables being created right now
            assert "no such table" in str(exc), exc
            return set()


def trials(repo: Path):
    from pipeline.params.load import load_search
    from pipeline.search.storage import open_study

    params, entry = load_search(repo / "params.yaml", "tiny")
    return open_study("tiny", entry, params, repo)[0].get_trials(deepcopy=False)


@pytest.fixture
def project(tmp_path, mirror) -> Path:
    """A project with the fixture MNIST prepared, its test split removed: a trial that read it fails."""
    repo = copy_project(tmp_path / "project", search_params())
    dvc(repo, "repro", "preprocess@mnist", env=project_env(PIPELINE_DATA_MIRROR=str(mirror)))
    for name in ("x_test.npy", "y_test.npy"):
        (repo / "data" / "prepared" / "mnist" / name).unlink()
    return repo


def trial_runs(repo: Path) -> list:
    from tests.helpers import mlflow_client

    client = mlflow_client(repo)
    experiment = client.get_experiment_by_name("search-tiny")
    return client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")


@pytest.mark.e2e
def test_a_study_prunes_resumes_after_sigkill_and_writes_a_setting(project):
    from optuna.trial import TrialState

    enqueue(project, 0.003, 0.003, 0.0000001)
    search = subprocess.Popen(study_command(), cwd=project, env=held_from(1), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:  # killed once trial 1 is training (held), trial 0 complete
        wait_until_running(project, search, trial=1)
    finally:
        os.killpg(search.pid, signal.SIGKILL)
        search.wait()
    before = {t.number: t for t in trials(project)}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING, search.stderr.read()

    result = run(study_command(), project)
    after = trials(project)
    by_number = {t.number: t for t in after}
    assert by_number[0].datetime_complete == before[0].datetime_complete  # kept, not trained again
    assert by_number[1].state == TrialState.FAIL and by_number[1].user_attrs["interrupted"]
    retry = next(t for t in after if t.user_attrs.get("retry_of") == 1)
    assert retry.params == {"learning_rate": 0.003, "batch_size": 32}  # as queued, also if killed before drawing
    finished = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3, ([(t.number, t.state) for t in after], result.stderr)
    assert any(t.state == TrialState.PRUNED for t in finished), result.stderr
    assert "trial(s) 1 interrupted, run again" in result.stderr
    assert "cuInit" not in result.stderr  # TensorFlow's start-up noise, kept out as the train stage does
    assert "best so far" in result.stderr and "trial(s) left" in result.stderr

    runs = trial_runs(project)
    states = sorted(r.data.tags["state"] for r in runs)
    assert states.count("complete") + states.count("pruned") == 3 and "interrupted" in states
    assert all(r.data.tags.get("mlflow.parentRunId") for r in runs)
    complete = next(r for r in runs if r.data.tags["state"] == "complete")
    assert {"learning_rate", "batch_size"} <= set(complete.data.params)
    from tests.helpers import mlflow_client

    assert len(mlflow_client(project).get_metric_history(complete.info.run_id, "val_accuracy")) == 3

    params = load_params(project / "params.yaml")  # loads as every stage would
    assert params.settings["mnist-k3-s1-searched"].learning_rate == 0.003
    sweep = params.sweeps["tiny"]
    assert sweep.settings == ("mnist-k3-s1", "mnist-k3-s1-searched") and sweep.vary == "learning_rate"
    stages = dvc(project, "stage", "list", "--name-only").stdout.split()
    assert {"train@mnist-k3-s1-searched-0", "evaluate@mnist-k3-s1-searched-0"} <= set(stages)  # dvc repro trains it
    text = (project / "params.yaml").read_text()
    assert "# make search NAME=tiny: trial 0" in text
    assert not (project / "data" / "prepared" / "mnist" / "x_test.npy").exists()

    again = run(study_command(), project)  # finished: nothing trains, the same result is written
    assert "3 of 3 trials finished" in again.stderr
    assert (project / "params.yaml").read_text() == text


@pytest.mark.e2e
def test_ctrl_c_stops_at_a_safe_point_and_the_trial_runs_again(project):
    """SIGINT mid-trial: one line saying how to resume; the trial is failed as interrupted and queued
    again with its values (a KeyboardInterrupt raised wherever Python was, e.g. in a garbage
    collector's callback, would be dropped and the study train on)."""
    from optuna.trial import TrialState

    enqueue(project, 0.003, 0.003)
    search = subprocess.Popen(study_command(), cwd=project, env=held_from(1), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until_running(project, search, trial=1)
    os.killpg(search.pid, signal.SIGINT)
    _, stderr = search.communicate(timeout=seconds_left(120))
    assert search.returncode == 130, stderr
    assert stderr.splitlines()[-1] == ("error: interrupted; finished trials are kept: `make search NAME=tiny` "
                                       "resumes the study")
    assert "Traceback" not in stderr and "[W " not in stderr  # nor Optuna's warning of a failed trial
    by_number = {t.number: t for t in trials(project)}
    assert by_number[0].state == TrialState.COMPLETE
    assert by_number[1].state == TrialState.FAIL and by_number[1].user_attrs["interrupted"]
    assert any(t.state == TrialState.WAITING and t.user_attrs.get("retry_of") == 1 for t in by_number.values())


def lock_is_free(repo: Path) -> bool:
    """Whether no process holds the study's lock: the driver and every worker (they inherit it) gone."""
    import fcntl

    with open(repo / ".dvc" / "tmp" / "search" / "tiny.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@pytest.mark.e2e
def test_jobs_run_trials_side_by_side_and_a_killed_driver_stops_its_workers(project):
    """JOBS=2: two worker processes train at once. SIGKILL to the driver alone (its workers are in
    sessions of their own) still stops them: each queues its trial again; the rerun finishes exactly
    the entry's 3 trials under the same study run."""
    from optuna.trial import TrialState

    command = [*study_command(), "--jobs", "2"]
    search = subprocess.Popen(command, cwd=project, env=held_from(0), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until_running(project, search, count=2)  # each worker's trial held after its first epoch
    finally:
        search.kill()
        search.wait()
    deadline = time.monotonic() + seconds_left(120)
    while not lock_is_free(project):
        assert time.monotonic() < deadline, "the workers outlived their driver"
        time.sleep(0.2)
    interrupted = [t for t in trials(project) if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 2 and all(t.state == TrialState.FAIL for t in interrupted)

    result = run(command, project)
    assert "2 side by side" in result.stderr, result.stderr
    assert "cuInit" not in result.stderr  # nor from the workers
    after = trials(project)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == 3, result.stderr
    for trial in interrupted:
        retry = next(t for t in after if t.user_attrs.get("retry_of") == trial.number)
        assert retry.params == trial.params and retry.state != TrialState.WAITING
    runs = trial_runs(project)
    assert {r.data.tags["worker"] for r in runs} == {"0", "1"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    assert "mnist-k3-s1-searched" in load_params(project / "params.yaml").settings


@pytest.mark.e2e
def test_a_study_runs_on_dask_workers_through_the_drivers_storage(project, tmp_path):
    """make search SCHEDULER=...: two Dask worker 'machines' draw the trials from the study on the
    driver's machine (over gRPC), each in a checkout of the commit with the data from the DVC remote,
    logging to one tracking server; the driver prints each finished trial and writes the setting."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from tests.helpers import dask_cluster, free_port, http_service, mlflow_server

    dvc(project, "remote", "add", "--local", "-d", "shared", str(tmp_path / "remote"))
    port = free_port()
    with http_service(mlflow_server(port, tmp_path), port, "mlflow server") as url, \
            dask_cluster(tmp_path, workers=2) as (scheduler, machines, _):
        result = run([*study_command(), "--scheduler", scheduler.removeprefix("tcp://")], project,  # as Dask reads it
                     env=project_env(MLFLOW_TRACKING_URI=url))
        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("search-tiny")
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")
        study_run = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'study'")
    assert "2 worker(s) of tcp://127.0.0.1" in result.stderr, result.stderr
    after = trials(project)  # the study stayed in the driver's .dvc/tmp
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == 3, result.stderr
    assert result.stderr.count("trial(s) left") == 3  # the driver's line per finished trial
    assert len(runs) == 3 and {r.data.tags["mlflow.parentRunId"] for r in runs} == {study_run[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not [path for machine in machines for path in machine.glob("**/checkouts/*")]  # cleaned up
    assert "mnist-k3-s1-searched" in load_params(project / "params.yaml").settings


def test_a_resumed_study_draws_new_values_and_more_trials_continue_it(tmp_path):
    """A sampler seeded alike on every start drew a resumed study's first random trials again; and
    raising `trials` is more of the same study, while any other change is a new one."""
    from pipeline.params.load import load_search
    from pipeline.search.storage import open_study
    from pipeline.search.trial import sample

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(search_params(), sort_keys=False))
    params, entry = load_search(path, "tiny")
    (tmp_path / ".dvc" / "tmp" / "search").mkdir(parents=True)
    drawn = []
    for _start in range(3):
        study, _, _ = open_study("tiny", entry, params, tmp_path)
        trial = study.ask()
        drawn.append(sample(trial, entry)["learning_rate"])
        study.tell(trial, 0.5)
    assert len(set(drawn)) == 3, drawn

    from dataclasses import replace

    from pipeline.search.identity import identity

    def study_name(entry, params):
        from pipeline.search.identity import study_name

        return study_name("tiny", identity(entry, params, "data"))

    assert study_name(replace(entry, trials=40), params) == study_name(entry, params)
    assert study_name(replace(entry, epochs=4), params) != study_name(entry, params)
    quick = replace(params, train=replace(params.train, epochs=2, subset=0.2))  # the base's budget: not a trial's
    assert study_name(entry, quick) == study_name(entry, params)
    other = replace(params, train=replace(params.train, optimizer="sgd"))  # not in the space: trials train with it
    assert study_name(entry, other) != study_name(entry, params)


def test_workers_sharing_no_lock_take_no_more_trials_than_the_entry_counts(tmp_path):
    """Dask workers reach the study through the driver's gRPC proxy and share no lock: four asking at
    once for the one trial left get one. The others hand theirs back unrun, a queued trial's values
    queued again; none of them counts as finished."""
    import contextlib
    import threading
    from dataclasses import replace

    from optuna.trial import TrialState

    from pipeline.params.load import load_search
    from pipeline.search.cluster import serve_study
    from pipeline.search.storage import counted, open_study, worker_study
    from pipeline.search.worker import next_trial

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(search_params(), sort_keys=False))
    params, entry = load_search(path, "tiny")
    entry = replace(entry, trials=1)
    (tmp_path / ".dvc" / "tmp" / "search").mkdir(parents=True)
    study, storage, _ = open_study("tiny", entry, params, tmp_path)
    for rate in (0.001, 0.002):  # two queued (retried) trials, then new ones
        study.enqueue_trial({"learning_rate": rate, "batch_size": 32})
    server, address = serve_study(storage, "127.0.0.1")
    start, taken = threading.Barrier(4), []

    def worker(number: int) -> None:
        mine = worker_study(study.study_name, entry, path, number, address)
        start.wait()
        trial = next_trial(mine, entry, contextlib.nullcontext())
        if trial is not None:
            taken.append(trial.number)

    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.stop(grace=None)
    assert taken == [0]  # the lowest number holds the slot
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[0].state == TrialState.RUNNING and not any(counted(t) for t in trials.values())
    assert [t.params.get("learning_rate") or t.system_attrs["fixed_params"]["learning_rate"]
            for t in trials.values() if t.state == TrialState.WAITING] == [0.002]  # queued again, unrun


def test_missing_prepared_data_is_one_line_naming_the_command(tmp_path, monkeypatch):
    from pipeline.search import study

    repo = copy_project(tmp_path / "project", search_params())
    monkeypatch.chdir(repo)
    status, stderr = run_stage(study.main, ["tiny"])
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert "run: dvc repro preprocess@mnist" in stderr and "x_train.npy" in stderr


def test_a_search_on_a_cluster_without_a_shared_tracking_server_is_one_line_before_the_study_opens(tmp_path,
                                                                                                     monkeypatch):
    from pipeline.search import study

    repo = copy_project(tmp_path / "project", search_params())
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    status, stderr = run_stage(study.main, ["tiny", "--scheduler", "tcp://127.0.0.1:1"])
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert "set MLFLOW_TRACKING_URI=http://<server>:5000" in stderr
    assert not (repo / ".dvc" / "tmp" / "search").exists() and not (repo / "mlruns" / "mlflow.db").exists()


def test_an_unknown_entry_is_one_line(tmp_path):
    from pipeline.search import study

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(search_params(), sort_keys=False))
    status, stderr = run_stage(study.main, ["nope", "--params", str(path)])
    assert_one_line_naming(path, status, stderr)
    assert "search.nope: no such search entry (known: tiny)" in stderr


def with_entry(**changes) -> dict:
    entry = copy.deepcopy(ENTRY)
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return search_params(entry)


@pytest.mark.parametrize("params,key,problem", [
    (with_entry(space={"learning_rate": {"low": 0.01, "high": 0.001}}), "search.tiny.space.learning_rate",
     "low 0.01 is not below high 0.001"),
    (with_entry(space={"l2": {"low": 0.0, "high": 0.01, "log": True}}), "search.tiny.space.l2",
     "a log scale needs low > 0"),
    (with_entry(space={"colour": {"choices": ["rgb"]}}), "search.tiny.space.colour", "'colour' is no key"),
    (with_entry(space={"epochs": {"low": 1, "high": 5}}), "search.tiny.space.epochs", "per-trial budget"),
    (with_entry(space={"dropout": {"choices": [[0.1, 0.2, 0.3]]}}), "search.tiny.space.dropout",
     "'dropout' is no key a mnist trial can vary"),
    (with_entry(space={"strides": {"choices": [1, 29]}}), "search.tiny.space", "strides 29 shrinks the feature map"),
    (with_entry(space={"optimizer": {"choices": ["adam", "lbfgs"]}}), "search.tiny.space.optimizer", "'lbfgs'"),
    (with_entry(space={"batch_size": {"low": 16, "high": 64.0}}), "search.tiny.space.batch_size",
     "both as integers"),
    (with_entry(space={"kernel": {"choices": [3], "low": 1, "high": 3}}), "search.tiny.space.kernel", "not both"),
    (with_entry(space={"kernel": {}}), "search.tiny.space.kernel", "expected a range"),
    (with_entry(space={}), "search.tiny.space", "no keys to vary"),
    (with_entry(base="mnist-k9"), "search.tiny.base", "no setting 'mnist-k9'"),
    (with_entry(metric="test_accuracy"), "search.tiny.metric", "'val_accuracy' or 'val_loss'"),
    (with_entry(trials=0), "search.tiny.trials", "greater than 0"),
    (with_entry(subset=1.5), "search.tiny.subset", "less than or equal to 1"),
    (with_entry(trails=3), "search.tiny.trails", "unknown key"),
    (with_entry(epochs=None), "search.tiny.epochs", "missing key"),
])
def test_a_bad_search_entry_is_one_line(params, key, problem):
    with pytest.raises(ParamsError) as error:
        parse_params(params, "params.yaml")
    message = str(error.value)
    assert message.startswith(f"params.yaml: {key}: ") and problem in message and "\n" not in message, message


def test_the_shipped_entry_loads():
    from pipeline.params.load import load_search
    from tests.helpers import SHIPPED_PARAMS

    params, entry = load_search(SHIPPED_PARAMS, "mnist-k3")
    assert entry.base in params.settings and entry.metric.startswith("val_")


def test_a_sweep_may_vary_several_keys_joined_by_plus():
    params = tiny_params()
    params["settings"]["mnist-k3-s1-searched"] = {**params["settings"]["mnist-k3-s1"], "learning_rate": 0.003,
                                                  "batch_size": 64}
    params["sweeps"]["s"] = {"vary": "learning_rate+batch_size", "settings": ["mnist-k3-s1", "mnist-k3-s1-searched"]}
    parse_params(params)
    params["sweeps"]["s"]["vary"] = "learning_rate"
    with pytest.raises(ParamsError, match="differs from mnist-k3-s1 in batch_size"):
        parse_params(params)
    params["sweeps"]["s"]["vary"] = "learning_rate+colour"
    with pytest.raises(ParamsError, match="'colour' is no key a setting can vary"):
        parse_params(params)


def test_a_sweep_of_several_keys_is_labelled_with_each():
    from pipeline.reporting.tables import key_name, sweep_label

    assert key_name("learning_rate+kernel") == "Learning rate + Kernel size"
    assert sweep_label("learning_rate+kernel", {"learning_rate": 0.003, "kernel": 5}) == "0.003, (5,5)"


def test_every_value_the_shipped_space_draws_trains_a_valid_setting():
    import optuna

    from pipeline.params.load import load_search
    from pipeline.search.trial import sample, trial_job
    from tests.helpers import SHIPPED_PARAMS

    params, entry = load_search(SHIPPED_PARAMS, "mnist-k3")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction=entry.direction)
    for _ in range(20):
        trial = study.ask()
        values = sample(trial, entry)
        job = trial_job(params, entry, "t", values, Path("data/prepared/mnist"))
        assert job.train.epochs == entry.epochs and job.train.subset == entry.subset
        assert job.train.learning_rate == values["learning_rate"] and job.model.dense_units == values["dense_units"]
        assert isinstance(values["dense_units"], int) and 64 <= values["dense_units"] <= 512
        study.tell(trial, 0.5)


def test_a_cifar_space_chooses_dropout_triples(tmp_path):
    import optuna

    from pipeline.params.load import load_search
    from pipeline.search.study import best_values
    from pipeline.search.trial import sample

    params = search_params({**ENTRY, "base": "cifar10-k3-s1",
                            "space": {"dropout": {"choices": [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]]}}})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    _, entry = load_search(path, "tiny")
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    values = sample(trial, entry)
    study.tell(trial, 0.5)
    assert list(values["dropout"]) in ([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert best_values(study, entry) == values


def test_the_result_is_a_setting_and_a_sweep_of_the_keys_it_changed(tmp_path):
    from pipeline.params.load import load_search
    from pipeline.search.result import write_result
    from tests.helpers import shipped_params_text

    path = tmp_path / "params.yaml"
    path.write_text(shipped_params_text())
    _, entry = load_search(path, "mnist-k3")
    values = {"learning_rate": 0.003, "l2": 0.0001, "batch_size": 128, "optimizer": "adam", "kernel": 3,
              "dense_units": 300}  # batch size, optimizer and kernel as the base has them
    assert write_result(path, "mnist-k3", entry, values, 7, 0.98) == ("mnist-k3-s1-searched",
                                                                      "learning_rate+l2+dense_units")
    params = load_params(path)
    searched = params.settings["mnist-k3-s1-searched"]
    assert (searched.learning_rate, searched.l2, searched.dense_units, searched.batch_size) == (0.003, 0.0001, 300,
                                                                                               None)
    assert list(params.settings).index("mnist-k3-s1-searched") == list(params.settings).index("mnist-k3-s1") + 1
    text = path.read_text()
    assert "# make search NAME=mnist-k3: trial 7, val_accuracy 0.9800 on 5 epoch(s)" in text
    assert "settings: [mnist-k3-s1, mnist-k3-s1-searched]" in text
    assert "# full passes over the training split (the report trains 50)" in text  # comments kept
    write_result(path, "mnist-k3", entry, {**values, "dense_units": 256}, 8, 0.99)  # again: replaced, not added
    params = load_params(path)
    assert params.sweeps["mnist-k3"].vary == "learning_rate+l2" and params.settings["mnist-k3-s1-searched"].l2 == 0.0001
    assert path.read_text().count("mnist-k3-s1-searched:") == 1


def test_the_report_compares_a_searched_setting_in_every_key_it_changed():
    from pipeline.reporting.build import build_report
    from tests.test_report_build import HOMEWORK, _result, _sweeps

    results = {"base": _result("base", 3, [0.9]), "base-searched": _result("base-searched", 5, [0.93],
                                                                           learning_rate=0.003)}
    sweeps = _sweeps(s=("learning_rate+kernel", "base", "base-searched"))
    text = build_report(results, sweeps, HOMEWORK).markdown
    assert "### Effect of the learning rate + kernel size (against `base`)" in text
    assert "| Learning rate + Kernel size | Train loss |" in text
    assert "\n| 0.003, (5,5) | 0.5000 |" in text and "| Δ test acc vs 0.001, (3,3) [95 % CI] |" in text
