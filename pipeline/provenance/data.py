"""The prepared data's digest: what a job trains on, and a tag of its runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.common.errors import PipelineError


def data_md5(directory: Path) -> str:
    """One digest over the prepared arrays (file names and contents), to tag runs with."""
    arrays = sorted(directory.glob("*.npy"))
    if not arrays:  # a digest of nothing would tag runs as trained on data that is not there
        raise PipelineError(f"{directory}: no prepared arrays (*.npy) there; the preprocess stage writes them: "
                            "dvc repro preprocess@<dataset>")
    digest = hashlib.md5()
    for path in arrays:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
