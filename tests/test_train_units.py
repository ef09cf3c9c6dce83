"""Pure helpers of the train stage and what counts as a smoke run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np

from pipeline.params.load import parse_params
from pipeline.params.schema import REPORT_EPOCHS
from pipeline.train import training_subset
from tests.helpers import REPO, shipped_params


def test_training_subset_is_a_seeded_sorted_share():
    picked = training_subset(1000, 0.2, seed=0)
    assert len(picked) == 200 and len(set(picked)) == 200
    assert np.all(np.diff(picked) > 0) and picked.max() < 1000
    np.testing.assert_array_equal(picked, training_subset(1000, 0.2, seed=0))
    assert not np.array_equal(picked, training_subset(1000, 0.2, seed=1))
    assert training_subset(1000, 1.0, seed=0) is None
    assert len(training_subset(3, 0.01, seed=0)) == 1


def test_smoke_run_means_fewer_epochs_or_images_than_the_report():
    train = parse_params(shipped_params(), "params.yaml").train
    assert not train.smoke_run  # the shipped values reproduce the report
    assert dataclasses.replace(train, epochs=REPORT_EPOCHS - 1).smoke_run
    assert dataclasses.replace(train, subset=0.5).smoke_run


def test_auto_precision_is_bfloat16_only_where_the_chip_has_bf16_instructions():
    from pipeline.model.runtime import resolved_precision

    sapphire_rapids = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    zen5 = {"avx512f", "avx512_bf16", "avx512_vp2intersect"}  # bf16 instructions, no AMX
    cascade_lake = {"avx512f", "avx512_vnni"}
    assert resolved_precision("auto", sapphire_rapids, []) == "mixed_bfloat16"
    assert resolved_precision("auto", zen5, []) == "mixed_bfloat16"
    assert resolved_precision("auto", cascade_lake, []) == "float32"
    assert resolved_precision("auto", {"avx2"}, []) == "float32"
    assert resolved_precision("auto", sapphire_rapids, [(7, 0)]) == "float32"  # a V100 trains, not the CPU
    assert resolved_precision("auto", set(), [(8, 0), (9, 0)]) == "mixed_bfloat16"
    assert resolved_precision("float32", sapphire_rapids, []) == "float32"  # an explicit choice stays


def test_tensorflow_is_imported_without_keras_extras_that_stay_importable_after():
    from pipeline.model.runtime import KERAS_EXTRAS_UNUSED

    check = ("import importlib, sys\n"
             "from pipeline.model.runtime import KERAS_EXTRAS_UNUSED, load_tensorflow\n"
             "load_tensorflow()\n"
             "imported = set(KERAS_EXTRAS_UNUSED) & set(sys.modules)\n"
             "assert 'keras' in sys.modules and not imported, imported\n"
             "for name in KERAS_EXTRAS_UNUSED: importlib.import_module(name)\n")
    assert KERAS_EXTRAS_UNUSED
    subprocess.run([sys.executable, "-c", check], cwd=REPO, check=True)
