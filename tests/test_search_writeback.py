"""What a search writes into params.yaml (issue 43): nothing the user wrote is replaced, an entry
whose result would replace it is refused before any trial in one line, its own earlier result is
updated in place, the setting is plain YAML of its own, and two writers never lose each other's
result. On the shipped params.yaml's text, with entries added to its `search:` section."""

from __future__ import annotations

import re
import threading
import time

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pipeline.common.errors import PipelineError
from pipeline.params.file import ParamsError
from pipeline.params.load import load_search, parse_params
from pipeline.params.searched import blocks, writer
from pipeline.search.result import params_lock, write_result
from tests.helpers import run_stage, shipped_params, shipped_params_text

ENTRY = {"base": "mnist-k5-s1", "trials": 2, "epochs": 1, "subset": 0.1, "metric": "val_accuracy",
         "space": {"learning_rate": {"low": 0.0001, "high": 0.01, "log": True}, "batch_size": {"choices": [32, 64]}}}
BEST = {"learning_rate": 0.003, "batch_size": 64}


def with_entries(text: str, **entries: dict) -> str:
    """The text with these entries added at the end of `search:`, the file's last section."""
    assert list(shipped_params())[-1] == "search"
    indented = yaml.safe_dump(entries, sort_keys=False, default_flow_style=None).splitlines()
    return text.rstrip("\n") + "\n" + "".join(f"  {line}\n" for line in indented)


def params_at(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def block_texts(text: str) -> dict[tuple[str, str], str]:
    lines = text.splitlines(keepends=True)
    return {(section, key): "".join(lines[b.start:b.end]) for section, found in blocks(text).items()
            for key, b in found.items()}


def test_an_entry_named_like_a_sweep_is_refused_before_any_trial_and_result_names_it_apart(tmp_path):
    """Case 1: `mnist-kernel`, the homework's kernel sweep, would have become the search's sweep."""
    from pipeline.search import study

    path = params_at(tmp_path, with_entries(shipped_params_text(), **{"mnist-kernel": ENTRY}))
    status, stderr = run_stage(study.main, ["mnist-kernel", "--params", str(path)])
    assert status == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"error: {path}: search.mnist-kernel: its result would replace the sweep 'mnist-kernel' "
                             "(not written by this search)") and "`result: <name>`" in stderr, stderr

    path = params_at(tmp_path, with_entries(shipped_params_text(),
                                            **{"mnist-kernel": {**ENTRY, "result": "mnist-k3-tuned"}}))
    before = path.read_text()
    _, entry = load_search(path, "mnist-kernel")
    assert write_result(path, "mnist-kernel", entry, BEST, 1, 0.9) == ("mnist-k3-tuned", "learning_rate+batch_size")
    after = path.read_text()
    assert block_texts(after)[("sweeps", "mnist-kernel")] == block_texts(before)[("sweeps", "mnist-kernel")]
    params = parse_params(yaml.safe_load(after))
    assert params.sweeps["mnist-k3-tuned"].settings == ("mnist-k5-s1", "mnist-k3-tuned")
    assert params.settings["mnist-k3-tuned"].learning_rate == 0.003


def test_a_setting_the_user_named_base_searched_is_refused_and_two_entries_may_not_write_one(tmp_path):
    """Case 2: the user's `<base>-searched`, and a second entry of the same base."""
    text = shipped_params_text().replace("  mnist-k5-s1:\n", "  mnist-k3-s1-searched:\n    dataset: mnist\n"
                                         "    kernel: 3\n    strides: 1\n    l2: 0.0001\n  mnist-k5-s1:\n")
    path = params_at(tmp_path, text)
    with pytest.raises(ParamsError, match=r"search.mnist-k3: its result would replace the setting "
                                          r"'mnist-k3-s1-searched' \(not written by this search\)"):
        load_search(path, "mnist-k3")

    again = {**ENTRY, "base": "mnist-k3-s1"}
    path = params_at(tmp_path, with_entries(shipped_params_text(), **{"mnist-k3-again": again}))
    with pytest.raises(ParamsError) as error:
        load_search(path, "mnist-k3")
    assert str(error.value) == (f"{path}: search.mnist-k3-again: writes the setting 'mnist-k3-s1-searched', as "
                                "search.mnist-k3 does: give one of them a `result:` name of its own")
    path = params_at(tmp_path, with_entries(shipped_params_text(), **{"mnist-k3-again": {**ENTRY, "base": "mnist-k3-s1",
                                                                                 "result": "x"}}))
    load_search(path, "mnist-k3-again")


def test_the_stages_read_two_entries_of_one_base_which_only_the_search_refuses(tmp_path):
    """params.yaml's search section retrains nothing: a clash between entries stops the search, not `dvc repro`."""
    again = {**ENTRY, "base": "mnist-k3-s1"}
    path = params_at(tmp_path, with_entries(shipped_params_text(), **{"mnist-k3-again": again}))
    parse_params(yaml.safe_load(path.read_text()), path)
    with pytest.raises(ParamsError, match="as search.mnist-k3 does"):
        load_search(path, "mnist-k3-again")


def test_a_file_without_a_block_sweep_gets_one_line_and_stays_as_it_was(tmp_path):
    raw = shipped_params()
    raw["sweeps"] = {}
    path = params_at(tmp_path, with_entries(yaml.safe_dump(raw, sort_keys=False), tuned=ENTRY))
    text = path.read_text()
    _, entry = load_search(path, "tuned")
    with pytest.raises(PipelineError, match=r"sweeps: holds no sweep written as a block.*nothing written"):
        write_result(path, "tuned", entry, BEST, 1, 0.9)
    assert path.read_text() == text


def test_its_own_earlier_result_is_updated_in_place_and_a_result_taken_over_is_refused(tmp_path):
    path = params_at(tmp_path, with_entries(shipped_params_text(), tuned=ENTRY))
    _, entry = load_search(path, "tuned")
    write_result(path, "tuned", entry, BEST, 1, 0.9)
    first = path.read_text()
    assert writer(first, blocks(first)["settings"]["mnist-k5-s1-searched"]) == "tuned"
    write_result(path, "tuned", entry, {**BEST, "batch_size": 128}, 2, 0.95)  # as the base in batch size
    second = path.read_text()
    assert second.count("mnist-k5-s1-searched:") == 1 and "vary: learning_rate\n" in second
    names = list(blocks(second)["settings"])
    assert names.index("mnist-k5-s1-searched") == names.index("mnist-k5-s1") + 1  # where it was, after its base

    path.write_text(re.sub(r"(mnist-k5-s1-searched:)  #.*", r"\1", second))  # the user's now
    with pytest.raises(ParamsError, match="would replace the setting 'mnist-k5-s1-searched'"):
        load_search(path, "tuned")


def test_the_written_setting_is_a_plain_mapping_without_anchors(tmp_path):
    """Case 3: a CIFAR base that sets its own dropout list; the best trial keeps it and changes the
    learning rate. A list shared with the base was written as `&id001` / `*id001`."""
    text = shipped_params_text().replace("    l2: 0.0\n  cifar10-k5-s1:\n",
                                         "    l2: 0.0\n    dropout: [0.2, 0.3, 0.4]\n  cifar10-k5-s1:\n")
    entry = {**ENTRY, "base": "cifar10-k3-s1", "space": {"learning_rate": ENTRY["space"]["learning_rate"],
                                                         "dropout": {"choices": [[0.2, 0.3, 0.4], [0.1, 0.1, 0.1]]}}}
    path = params_at(tmp_path, with_entries(text, cifar=entry))
    _, loaded = load_search(path, "cifar")
    assert write_result(path, "cifar", loaded, {"learning_rate": 0.003, "dropout": (0.2, 0.3, 0.4)}, 0, 0.5)[1] == \
        "learning_rate"
    written = path.read_text()
    assert "&" not in written and "*id" not in written
    assert "  cifar10-k3-s1-searched:  # make search NAME=cifar: trial 0" in written
    assert yaml.safe_load(written)["settings"]["cifar10-k3-s1-searched"]["dropout"] == [0.2, 0.3, 0.4]


def test_a_best_trial_that_trains_as_the_base_writes_nothing(tmp_path):
    """Case 7: a learning rate and batch size equal to the shared train values the base uses."""
    path = params_at(tmp_path, with_entries(shipped_params_text(), tuned=ENTRY))
    before = path.read_text()
    _, entry = load_search(path, "tuned")
    assert write_result(path, "tuned", entry, {"learning_rate": 0.001, "batch_size": 128}, 3, 0.9) is None
    assert path.read_text() == before


def test_the_last_setting_as_base_keeps_the_comment_that_introduces_sweeps(tmp_path):
    """Case 10, second half: inserted after the last setting, the result went below the comment
    that introduces `sweeps:`; the sweep went below the one that introduces `search:`."""
    path = params_at(tmp_path, with_entries(shipped_params_text(), rgb={**ENTRY, "base": "cifar10-k3-s1-rgb",
                                                                        "space": {"batch_size": {"choices": [32]}}}))
    before = path.read_text()
    _, entry = load_search(path, "rgb")
    write_result(path, "rgb", entry, {"batch_size": 32}, 0, 0.5)
    after = path.read_text()
    setting = "  cifar10-k3-s1-rgb-searched:  # make search NAME=rgb: trial 0, val_accuracy 0.5000 on 1 epoch(s)\n"
    assert "    color: rgb\n" + setting + "    dataset: cifar10\n" in after
    assert "    batch_size: 32\n\n# The report's tables" in after
    assert "  rgb:  # make search NAME=rgb: the search's best against its base\n    vary: batch_size\n    settings: " \
           "[cifar10-k3-s1-rgb, cifar10-k3-s1-rgb-searched]\n\n# Searches for a better setting" in after
    removed = after.replace(setting, "").replace("    dataset: cifar10\n    kernel: 3\n    strides: 1\n    l2: 0.0\n"
                                                  "    color: rgb\n    batch_size: 32\n", "", 1)
    assert removed.replace("  rgb:  # make search NAME=rgb: the search's best against its base\n    vary: batch_size\n"
                           "    settings: [cifar10-k3-s1-rgb, cifar10-k3-s1-rgb-searched]\n", "") == before


def test_a_write_waits_for_the_lock_and_reads_the_file_afresh_inside_it(tmp_path):
    """Case 10: two searches finishing at once. While another writer holds the lock, the write
    waits; what that writer wrote is kept."""
    path = params_at(tmp_path, with_entries(shipped_params_text(), tuned=ENTRY))
    _, entry = load_search(path, "tuned")
    done = threading.Event()
    with params_lock(path):
        writing = threading.Thread(target=lambda: (write_result(path, "tuned", entry, BEST, 1, 0.9), done.set()))
        writing.start()
        time.sleep(1.0)
        assert not done.is_set()  # waiting for the lock
        path.write_text(path.read_text().replace("  mnist-k7-s1:\n", "  mnist-k9-s1:\n    dataset: mnist\n"
                                                 "    kernel: 9\n    strides: 1\n    l2: 0.0\n  mnist-k7-s1:\n"))
    writing.join(timeout=60)
    assert done.is_set()
    params = parse_params(yaml.safe_load(path.read_text()))
    assert {"mnist-k9-s1", "mnist-k5-s1-searched"} <= set(params.settings)


NAMES = st.sampled_from(["mnist-kernel", "mnist-l2", "cifar10-color", "mnist-k3-s1", "mnist-k5-s1-searched",
                         "mnist-k3-s1-searched", "fresh", "tuned"])


@settings(max_examples=30)
@given(name=NAMES, base=st.sampled_from(["mnist-k3-s1", "mnist-k5-s1", "mnist-k3-s1-l2", "mnist-k5-s3"]),
       result=st.none() | NAMES, user_setting=st.none() | NAMES, earlier=st.booleans(),
       rate=st.sampled_from([0.001, 0.003, 0.0002]), batch=st.sampled_from([32, 128]))
def test_a_write_back_changes_no_setting_or_sweep_but_its_own(tmp_path_factory, name, base, result, user_setting,
                                                             earlier, rate, batch):
    """Generated entries against the shipped names and a setting of the user's: refused at check
    time exactly when a name it writes is taken by something it did not write; otherwise every
    setting and sweep that was there before is byte for byte the same, but its own two."""
    text = shipped_params_text()
    if user_setting:
        text = text.replace("  mnist-k5-s1:\n", f"  {user_setting}:\n    dataset: mnist\n    kernel: 3\n"
                                                "    strides: 1\n    l2: 0.0001\n  mnist-k5-s1:\n", 1)
    text = with_entries(text, **{name: {**ENTRY, "base": base, **({"result": result} if result else {})}})
    path = params_at(tmp_path_factory.mktemp("params"), text)
    raw = yaml.safe_load(text)
    setting_name, sweep_name = (result, result) if result else (f"{base}-searched", name)
    taken = setting_name in raw["settings"] or sweep_name in raw["sweeps"]
    try:
        _, entry = load_search(path, name)
    except ParamsError as error:
        message = str(error)
        shared = {setting_name, sweep_name} & {"mnist-k3-s1-searched", "mnist-k3"}  # the shipped entry's
        duplicate = f"duplicate key {user_setting!r}" in message  # the user's setting has a shipped name
        assert ("would replace" in message and taken) or duplicate or \
            ("as search.mnist-k3 does" in message and shared), message
        event("refused")
        return
    assert not taken
    if earlier:
        write_result(path, name, entry, {"learning_rate": 0.0005}, 0, 0.5)
    before = path.read_text()
    own = {("settings", setting_name), ("sweeps", sweep_name)}
    write_result(path, name, entry, {"learning_rate": rate, "batch_size": batch}, 1, 0.9)
    event("written over its own" if earlier else "written")
    after = block_texts(path.read_text())
    for key, block in block_texts(before).items():
        if key not in own:
            assert after[key] == block, key


def test_a_study_is_new_when_the_data_preprocess_or_train_keys_change_and_says_why(tmp_path, capsys):
    """Case 4: a study reused after `normalization: per_image` and a fresh preprocess wrote the old
    winner, and more trials mixed two validation splits."""
    import numpy as np

    from pipeline.search.identity import identity, prepared_data_digest, study_name
    from pipeline.search.storage import open_study

    path = params_at(tmp_path, with_entries(shipped_params_text(), tuned=ENTRY))
    params, entry = load_search(path, "tuned")
    prepared = tmp_path / "data" / "prepared" / "mnist"
    prepared.mkdir(parents=True)
    for split in ("train", "val", "test"):
        np.save(prepared / f"x_{split}.npy", np.zeros((2, 28, 28, 1), np.float32))
    computed = prepared_data_digest(tmp_path, "mnist")
    np.save(prepared / "x_test.npy", np.ones((2, 28, 28, 1), np.float32))  # never read by a trial
    assert prepared_data_digest(tmp_path, "mnist") == computed
    np.save(prepared / "x_val.npy", np.ones((2, 28, 28, 1), np.float32))
    assert prepared_data_digest(tmp_path, "mnist") != computed
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"preprocess@mnist": {
        "outs": [{"path": "data/prepared/mnist", "md5": "0123abcd.dir", "nfiles": 6}]}}}))
    assert prepared_data_digest(tmp_path, "mnist") == "0123abcd.dir"
    (tmp_path / "dvc.lock").unlink()
    from_the_files = prepared_data_digest(tmp_path, "mnist")
    for broken in ("stages: [", "- a list\n", "stages: {preprocess@mnist: {outs: [x]}}\n"):  # DVC's to report
        (tmp_path / "dvc.lock").write_text(broken)
        assert prepared_data_digest(tmp_path, "mnist") == from_the_files
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"preprocess@mnist": {
        "outs": [{"path": "data/prepared/mnist", "md5": "0123abcd.dir", "nfiles": 6}]}}}))

    def named(params=params, entry=entry, data="0123abcd.dir"):
        return study_name("tuned", identity(entry, params, data))

    from dataclasses import replace

    assert named(data="fedc.dir") != named()
    assert named(replace(params, preprocess=replace(params.preprocess, normalization="per_image"))) != named()
    assert named(replace(params, train=replace(params.train, precision="float32"))) != named()  # a runtime key
    assert named(entry=replace(entry, result="elsewhere")) == named()  # scores nothing differently
    assert named(replace(params, train=replace(params.train, learning_rate=0.01))) == named()  # drawn by each trial

    (tmp_path / ".dvc" / "tmp" / "search").mkdir(parents=True)
    first = open_study("tuned", entry, params, tmp_path)[0].study_name
    assert open_study("tuned", entry, params, tmp_path)[0].study_name == first and capsys.readouterr().err == ""
    per_image = replace(params, preprocess=replace(params.preprocess, normalization="per_image"))
    assert open_study("tuned", entry, per_image, tmp_path)[0].study_name != first
    assert capsys.readouterr().err == f"tuned: a new study: preprocess: changed since study {first}\n"


def synthetic_mnist(directory, nan: bool = False):
    """A few prepared MNIST-shaped images per split; with `nan`, one training pixel NaN."""
    import numpy as np

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    for split, count in (("train", 64), ("val", 32)):
        x = rng.normal(size=(count, 28, 28, 1)).astype(np.float32)
        if nan and split == "train":
            x[0, 0, 0, 0] = np.nan
        np.save(directory / f"x_{split}.npy", x)
        np.save(directory / f"y_{split}.npy", rng.integers(0, 10, count).astype(np.int64))
    return directory


@pytest.mark.e2e
def test_a_nan_loss_fails_the_trial_with_its_reason_and_val_loss_leaves_out_the_l2_penalty(tmp_path):
    """Case 5: a trial whose loss went NaN was COMPLETE with the validation accuracy of diverged
    weights. Case 6: val_loss, as Keras logs it, adds the weights' L2 penalty."""

    import mlflow
    import numpy as np
    import optuna
    from optuna.trial import TrialState

    from pipeline.common.stops import SafeStops
    from pipeline.model.runtime import load_tensorflow
    from pipeline.search.trial import Data, epoch_reporter, trainer, trial_job
    from pipeline.train import build_compiled

    entry = {**ENTRY, "metric": "val_loss", "epochs": 2, "subset": 1.0,
             "space": {"l2": {"low": 0.001, "high": 0.1, "log": True}}}
    path = params_at(tmp_path, with_entries(shipped_params_text(), tuned=entry))
    params, loaded = load_search(path, "tuned")
    load_tensorflow()
    import keras

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("search-tuned")
    study = optuna.create_study(direction="minimize")
    with mlflow.start_run(experiment_id=experiment) as parent, SafeStops().installed() as stops:
        data = Data(synthetic_mnist(tmp_path / "nan", nan=True), "mnist")
        run_trial = trainer(params, loaded, "tuned", data, parent.info.run_id, experiment, stops, 0)
        trial = study.ask({"l2": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)})
        assert run_trial(trial) == (TrialState.FAIL, None)
        runs = mlflow.search_runs([experiment], filter_string="tags.kind = 'trial'", output_format="list")
        assert re.fullmatch(r"the training loss went nan in epoch [12]", runs[0].data.tags["failure_reason"])
        assert runs[0].data.tags["state"] == "failed"

        job = trial_job(params, loaded, "t", {"l2": 0.05}, synthetic_mnist(tmp_path / "clean"))
        model, _, _ = build_compiled(job)
        x_train, y_train, x_val, y_val = Data(job.data, "mnist").splits(job)
        reporter = epoch_reporter(study.ask(), "val_loss", 1, mlflow, stops)
        with mlflow.start_run(experiment_id=experiment, nested=True):
            history = model.fit(x_train, keras.utils.to_categorical(y_train, 10), batch_size=32, epochs=1, verbose=0,
                                validation_data=(x_val, keras.utils.to_categorical(y_val, 10)), callbacks=[reporter])
    predicted = model.predict(x_val, verbose=0)
    cross_entropy = float(np.mean(keras.losses.categorical_crossentropy(keras.utils.to_categorical(y_val, 10),
                                                                         predicted)))
    assert reporter.value == pytest.approx(cross_entropy, rel=1e-4)
    assert history.history["val_loss"][0] > cross_entropy + 0.01  # the penalty, left out of the score


def test_a_scheduler_address_without_protocol_serves_the_study_on_the_host_that_reaches_it():
    """Case 8: `SCHEDULER=10.0.0.5:8786` (Dask reads it as tcp://...) made the study's server bind
    to 127.0.0.1, where no remote worker reaches it. Here: this machine's own non-loopback address."""
    import psutil

    from pipeline.scaleout.cluster_setup import scheduler_address
    from pipeline.search.cluster import address_towards

    own = [a.address for addresses in psutil.net_if_addrs().values() for a in addresses
           if a.family.name == "AF_INET" and not a.address.startswith("127.")]
    if not own:
        pytest.skip("this machine has no IPv4 address but loopback")
    assert scheduler_address(f"{own[0]}:8786") == f"tcp://{own[0]}:8786"
    assert address_towards(scheduler_address(f"{own[0]}:8786")) == own[0]
