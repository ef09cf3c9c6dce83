"""Writing stage outputs so that a crash, a kill or a full disk never leaves a partial one.

Everything is written under a temporary name beside its destination and renamed into place
only when complete: DVC and MLflow never see, and so never trust, a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.common.errors import PipelineError


def _usual_mode(directory: bool) -> int:
    """What a plain open() or mkdir() would give: 0666 / 0777 less the umask. (The temporary
    names are created 0600 / 0700, which would otherwise stay on the renamed output.)"""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _raise_for_disk(exc: OSError, path: Path) -> None:
    raise PipelineError(f"{path}: cannot write ({exc.strerror}); nothing was written there") from exc


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _usual_mode(directory=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        _raise_for_disk(exc, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path | str, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary file path that replaces `path` when the block succeeds; with
    `keep_existing`, that takes its place only where there is none yet (one another process made
    meanwhile stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the extension: Keras and numpy pick the format from it.
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _usual_mode(directory=False))
        if keep_existing:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        _raise_for_disk(exc, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_text(path: Path | str, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
