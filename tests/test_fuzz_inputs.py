"""Property-based: whatever a hand edit or a crash leaves in params.yaml or in a file a stage reads
(job file, run file, resume state, epoch times, values before `size quick`, normalization record),
the stage either runs with exactly what the file says, or stops with one line on stderr that
names the file, a non-zero exit and no traceback.

Each example mutates a valid file: keys deleted, renamed, given odd values (negative, 0, huge,
1e-3, .inf, NaN, long strings, lists, maps, null), settings moved between sweeps and datasets; or
cuts the file short, empties it, or puts bytes in it that are not text. Readers are called through
pipeline.common.cli.run, as a stage's main is, in this process (no TensorFlow).

    python -m pytest tests/test_fuzz_inputs.py -q        # ci: the same 200 examples per target, ~20 s
    HYPOTHESIS_PROFILE=long nice -n 5 python -m pytest tests/test_fuzz_inputs.py -q   # 3000 new ones, ~4 min

(2-core CPU shared with a training). The profiles are registered in tests/conftest.py; add
--hypothesis-show-statistics to see the share of examples read and refused per target.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.common.outputs import write_json
from pipeline.job import TrainJob, job_text, load_job, stage_params
from pipeline.params import __main__ as params
from pipeline.params.load import load_params, parse_params
from pipeline.params.schema import SIZES, resolve
from pipeline.preprocess import read_normalization, zscore_stats
from pipeline.tracking.run_files import run_id_of
from pipeline.training.checkpoint import Resume
from pipeline.training.history import history_row
from pipeline.training.timings import EpochTiming, load_timings, record_timing, timings_file
from tests.helpers import assert_one_line_naming, run_stage, tiny_params

# tmp_path_factory is session-wide: every example of a test rewrites the same files
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ODD_VALUES = st.one_of(
    st.sampled_from([0, -1, 1, 10**30, -(10**30), 1e-3, -1e-3, 1e308, math.inf, -math.inf, math.nan, True, False,
                     None, "", "x" * 5000, "mnist", "cifar10", "auto", "rgb", [], {}, [0], [0.2, 0.3, 0.4]]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.one_of(st.integers(-3, 300), st.floats(-1, 2), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
)


def _places(node, path=()):
    """Every (container, key) in a parsed document, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        yield node, key
        yield from _places(value, (*path, key))


KEY_NAMES = st.text(max_size=12)


@st.composite
def mutated(draw, document, names=KEY_NAMES):
    """A deep copy of `document` with one to four keys deleted, renamed or given an odd value,
    or an odd value in its place."""
    strings = sorted({value for container, key in _places(document) for value in (key, container[key])
                      if isinstance(value, str)})
    document = copy.deepcopy(document)
    if draw(st.integers(0, 19)) == 0:
        return copy.deepcopy(draw(ODD_VALUES))
    for _ in range(draw(st.integers(1, 4))):
        places = list(_places(document))
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["delete", "rename", "retype", "tweak", "tweak"]))
        if action == "tweak":  # a value of the same type, as a hand edit would set: often still valid
            container[key] = copy.deepcopy(draw(_like(container[key], strings)))
        elif action == "delete":
            del container[key]
        elif action == "rename" and isinstance(container, dict):
            container[draw(names)] = container.pop(key)
        else:
            container[key] = copy.deepcopy(draw(ODD_VALUES))  # sampled lists are shared objects
    return document


def _like(value, strings: list[str]) -> st.SearchStrategy:
    """Values of `value`'s type; strings among those of the document."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-2, 600)
    if isinstance(value, float):
        return st.one_of(st.floats(-0.1, 1.5), st.sampled_from([1e-3, 0.0, 1.0]))
    if isinstance(value, str) and strings:
        return st.sampled_from(strings)
    return ODD_VALUES


@st.composite
def broken_bytes(draw, text: str):
    """`text` cut short, emptied, or with bytes that are not UTF-8 in it."""
    kind = draw(st.sampled_from(["truncated", "empty", "binary", "whitespace"]))
    data = text.encode()
    if kind == "truncated":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "binary":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + b"\xff" + data[at:]
    return b"" if kind == "empty" else b" \n\t"


def json_file(document) -> st.SearchStrategy[bytes]:
    """A JSON file written as `document`, mutated or broken."""
    text = json.dumps(document, indent=2)
    return st.one_of(mutated(document).map(lambda d: json.dumps(d, indent=2).encode()), broken_bytes(text))


def stage(main, argv=()) -> tuple[int, str]:
    status, stderr = run_stage(main, argv)
    event("read" if status == 0 else "refused")  # the share of each: --hypothesis-show-statistics
    return status, stderr


def same(a, b) -> bool:
    """Equal as JSON values: an integer read as the float nearest to it is the same number, NaN is
    NaN, but a boolean is not a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# params.yaml -----------------------------------------------------------------------------------

VALID_PARAMS = tiny_params()
PARAMS_KEYS = sorted({str(key) for container, key in _places(VALID_PARAMS) if isinstance(container, dict)})


@st.composite
def params_documents(draw):
    """tiny_params() mutated as a user might: besides any key, settings moved between sweeps and
    datasets."""
    raw = draw(mutated(VALID_PARAMS, names=st.one_of(st.sampled_from(PARAMS_KEYS), KEY_NAMES)))
    if isinstance(raw, dict) and isinstance(raw.get("sweeps"), dict) and isinstance(raw.get("settings"), dict):
        for _ in range(draw(st.integers(0, 2))):
            sweeps = [s for s in raw["sweeps"].values() if isinstance(s, dict) and isinstance(s.get("settings"), list)]
            if not sweeps or not raw["settings"]:
                break
            sweep = draw(st.sampled_from(sweeps))
            sweep["settings"].insert(draw(st.integers(0, len(sweep["settings"]))),
                                     draw(st.sampled_from(sorted(raw["settings"], key=str))))
        for setting in raw["settings"].values():
            if isinstance(setting, dict) and draw(st.integers(0, 9)) == 0:
                setting["dataset"] = draw(st.sampled_from(["mnist", "cifar10"]))
    return raw


def params_text(raw) -> bytes:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True).encode()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.one_of(params_documents().map(params_text),
                      broken_bytes(yaml.safe_dump(VALID_PARAMS, sort_keys=False))))
def test_params_check_loads_or_says_in_one_line_what_is_wrong(scratch, data):
    path = scratch / "params.yaml"
    path.write_bytes(data)
    status, stderr = stage(params.main, ["check", "--params", str(path)])
    if status == 0:
        assert stderr == ""
        load_params(path)
    else:
        assert_one_line_naming(path, status, stderr)


# job files -------------------------------------------------------------------------------------

def _job_document(setting: str) -> dict:
    own, train, model = resolve(*stage_params(parse_params(copy.deepcopy(VALID_PARAMS)), setting))
    return json.loads(job_text(TrainJob(setting, own, model, train, Path("data/prepared/x"), "0" * 32)))


@FUZZ
@given(data=st.one_of(json_file(_job_document("mnist-k3-s1")), json_file(_job_document("cifar10-k3-s1-rgb"))))
def test_a_job_file_is_read_as_written_or_named_in_one_line(scratch, data):
    path = scratch / "job.json"
    path.write_bytes(data)
    jobs = []
    status, stderr = stage(lambda argv: jobs.append(load_job(path, 0)))
    if status == 0:
        assert same(json.loads(job_text(jobs[0])), json.loads(data))
    else:
        assert_one_line_naming(path, status, stderr)


# run files -------------------------------------------------------------------------------------

RUN_FILE = {"run_id": "0123456789abcdef0123456789abcdef", "experiment": "hw2-mnist"}


@FUZZ
@given(data=json_file(RUN_FILE))
def test_a_run_file_gives_its_run_id_or_is_named_in_one_line(scratch, data):
    path = scratch / "run.json"
    path.write_bytes(data)
    run_ids = []
    status, stderr = stage(lambda argv: run_ids.append(run_id_of(path)))
    if status == 0:
        assert run_ids == [json.loads(data)["run_id"]]
    else:
        assert_one_line_naming(path, status, stderr)


# resume state ----------------------------------------------------------------------------------

def _resume_document(directory: Path) -> dict:
    logs = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6}  # an epoch cut short: val_accuracy NaN
    Resume(directory, "f" * 32).save("0" * 32, [history_row(1, {**logs, "val_accuracy": 0.7}, 2.0),
                                                history_row(2, logs, 1.5)])
    return json.loads((directory / "state.json").read_text())


@FUZZ
@given(data=st.data())
def test_a_resume_state_resumes_as_saved_or_is_named_in_one_line(scratch, data):
    directory = scratch / "backup" / "mnist-k3-s1" / "seed0"
    text = data.draw(json_file(_resume_document(directory)))
    (directory / "state.json").write_bytes(text)
    resumed = []
    status, stderr = stage(lambda argv: resumed.append(Resume.load(directory, "f" * 32)))
    if status != 0:
        assert_one_line_naming(directory / "state.json", status, stderr)
        return
    state = json.loads(text)
    if state["fingerprint"] == "f" * 32:
        assert same([resumed[0].run_id, list(resumed[0].rows)], [state["run_id"], state["rows"]])
    else:  # another job's backup: the training starts over, the backup gone
        assert (resumed[0].run_id, resumed[0].rows) == (None, ()) and not directory.exists()


# epoch times -----------------------------------------------------------------------------------

def _timings_document(root: Path) -> dict:
    timings_file(root).unlink(missing_ok=True)
    record_timing(root, "mnist-k3-s1", EpochTiming("host / cpu x2 / gpus default", 128, 54000, 6000, 41.5, "auto"))
    record_timing(root, "cifar10-k3-s1", EpochTiming("host / cpu x2 / gpus default", 32, 9000, 5000, 20.0))
    return json.loads(timings_file(root).read_text())


@FUZZ
@given(data=st.data())
def test_epoch_times_are_used_as_recorded_or_named_in_one_line_and_a_training_replaces_them(scratch, data):
    root = scratch / "timings"
    text = data.draw(json_file(_timings_document(root)))
    path = timings_file(root)
    path.write_bytes(text)
    loaded = []
    status, stderr = stage(lambda argv: loaded.append(load_timings(root)))
    if status == 0:
        document = json.loads(text)
        assert loaded[0].keys() == document.keys()
        for name, timing in loaded[0].items():  # keys of no field are ignored; a missing precision is ""
            assert all(same(getattr(timing, f.name), document[name].get(f.name, "")) for f in fields(timing))
            assert timing.seconds > 0 and timing.train_images > 0
    else:
        assert_one_line_naming(path, status, stderr)
    latest = EpochTiming("here", 64, 100, 10, 3.0)
    status, stderr = stage(lambda argv: record_timing(root, "new", latest))
    assert status == 0 and stderr.count("\n") <= 1 and "Traceback" not in stderr
    assert load_timings(root)["new"] == latest


# values before `size quick` --------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_size_full_restores_the_saved_values_or_names_their_file_in_one_line(scratch, data):
    directory = scratch / "size"
    directory.mkdir(exist_ok=True)
    path = directory / "params.yaml"
    saved = directory / ".dvc" / "tmp" / "size-before-quick.json"
    full = copy.deepcopy(VALID_PARAMS)
    full["train"].update({key.split(".")[1]: value for key, value in SIZES["full"].items()})
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    params.set_size(path, "quick")  # saves the full size's values: the file the example breaks
    text = data.draw(json_file(json.loads(saved.read_text())))
    saved.write_bytes(text)
    status, stderr = stage(params.main, ["size", "full", "--params", str(path)])
    if status == 0:
        train = load_params(path).train
        assert same({key: getattr(train, key.split(".")[1]) for key in SIZES["full"]}, json.loads(text))
    else:
        assert_one_line_naming(saved, status, stderr)
        train = load_params(path).train  # left at the quick size
        assert {key: getattr(train, key.split(".")[1]) for key in SIZES["quick"]} == SIZES["quick"]


# normalization record --------------------------------------------------------------------------

NORMALIZATIONS = [{"method": "zscore", "source": "training split", **zscore_stats(np.arange(12.0).reshape(1, 2, 2, 3))},
                  {"method": "zscore", "source": "training split", **zscore_stats(np.arange(4.0).reshape(1, 2, 2, 1))},
                  {"method": "per_image"}]


@FUZZ
@given(data=st.one_of(*map(json_file, NORMALIZATIONS)))
def test_a_normalization_record_is_read_as_written_or_named_in_one_line(scratch, data):
    path = scratch / "normalization.json"
    path.write_bytes(data)
    records = []
    status, stderr = stage(lambda argv: records.append(read_normalization(scratch)))
    if status == 0:
        assert same(records[0], json.loads(data))
        assert all(std > 0 for std in np.atleast_1d(records[0].get("std", 1)))
    else:
        assert_one_line_naming(path, status, stderr)


def test_the_files_the_properties_start_from_are_read_as_written(scratch):
    """Else every example above would fail to load, and the properties would hold for nothing."""
    valid = scratch / "valid"
    for setting in ("mnist-k3-s1", "cifar10-k3-s1-rgb"):
        write_json(valid / "job.json", _job_document(setting))
        assert json.loads(job_text(load_job(valid / "job.json", 0))) == _job_document(setting)
    write_json(valid / "run.json", RUN_FILE)
    assert run_id_of(valid / "run.json") == RUN_FILE["run_id"]
    saved = _resume_document(valid / "backup")
    assert same(list(Resume.load(valid / "backup", "f" * 32).rows), saved["rows"])
    recorded = _timings_document(valid)
    assert {name: asdict(timing) for name, timing in load_timings(valid).items()} == recorded
    for record in NORMALIZATIONS:
        write_json(valid / "normalization.json", record)
        assert read_normalization(valid) == record
