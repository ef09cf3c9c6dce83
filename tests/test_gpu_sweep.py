"""bench.gpu_sweep's own parts: the carried data, the specs, and which runs it trains."""

from __future__ import annotations

import numpy as np
import yaml

from bench.gpu_data import pack, unpack_cifar10
from bench.gpu_sweep import planned_runs, spec_params
from pipeline.preprocess import load_cifar10, to_gray
from tests.datasets import write_mirror
from tests.helpers import tiny_params


def test_packed_cifar_is_the_gray_images_rounded(tmp_path):
    mirror = write_mirror(tmp_path / "mirror")
    pack(mirror, tmp_path / "packed")
    x_train, y_train, x_test, y_test = load_cifar10(mirror / "cifar-10-python.tar.gz")
    packed = unpack_cifar10(tmp_path / "packed")
    for original, unpacked in ((x_train, packed[0]), (x_test, packed[2])):
        assert unpacked.shape == (len(original), 32, 32, 1)
        assert np.abs(unpacked - to_gray(original)).max() <= 0.5
    assert (packed[1] == y_train).all() and (packed[3] == y_test).all()


def test_spec_overrides_apply_to_a_copy_and_a_shared_run_trains_once(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    label, overridden = spec_params(f"{params}@preprocess.normalization=per_image,seeds=[0, 1],train.epochs=3")
    assert label.endswith("train.epochs=3")
    assert (overridden.preprocess.normalization, overridden.seeds, overridden.train.epochs) == ("per_image", (0, 1), 3)
    assert spec_params(str(params))[1].preprocess.normalization == "zscore"

    pack(write_mirror(tmp_path / "mirror"), tmp_path / "packed")
    runs = planned_runs([f"{params}@seeds=[0, 1]", str(params), f"{params}@preprocess.normalization=per_image"],
                        tmp_path / "packed", tmp_path / "work")
    gray = [name for name, s in tiny_params()["settings"].items() if s.get("color") != "rgb"]
    # seeds 0 and 1 of the first spec; the second adds nothing; per_image is new data: seed 0 again
    assert len(runs) == 3 * len(gray)
    assert [run["setting"] for run in runs[:2]] == ["cifar10-k3-s1"] * 2  # CIFAR first
    assert {run["variant"] for run in runs} == {f"{name}, {norm}, precision auto" for name in gray
                                               for norm in ("zscore", "per_image")}
