"""Where a run's inputs came from: the prepared data's digest and the code's git commit."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def data_md5(directory: Path) -> str:
    """One digest over the prepared arrays (file names and contents), to tag runs with."""
    digest = hashlib.md5()
    for path in sorted(directory.glob("*.npy")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def git_commit(root: Path) -> str:
    """HEAD of the checkout, or 'unknown' outside one (or without git installed)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"
