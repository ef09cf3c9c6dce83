"""download stage: fetch one dataset's canonical archive, verified, into data/raw/.

Source: the dataset's canonical URL and published checksum, or a mirror named by the
PIPELINE_DATA_MIRROR environment variable: a local directory, a file:// URL or an https URL
base that holds the same file names plus a SHA256SUMS manifest (`sha256sum` format), against
which each file is verified. The archive lands under its final name only after its checksum and
its structure were verified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit

import numpy as np
import pooch

from pipeline.common import cli
from pipeline.common.errors import PipelineError, redact
from pipeline.common.outputs import atomic_file

MIRROR_ENV = "PIPELINE_DATA_MIRROR"
MANIFEST = "SHA256SUMS"
RETRIES = 3  # transient network errors: 1 s, 2 s, 3 s back-off (pooch's schedule)
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_MEMBERS = tuple(f"{CIFAR_DIR}/{name}" for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH, CIFAR_META))


@dataclass(frozen=True)
class Archive:
    file_name: str
    url: str
    known_hash: str  # pooch notation: "<algorithm>:<hex digest>"


ARCHIVES = {
    "mnist": Archive(
        "mnist.npz",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    ),
    "cifar10": Archive(
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
    ),
}

MIRROR_HINT = (
    f"without access to that host, take the files from a mirror: {MIRROR_ENV}=DIR make quick (or make repro), "
    f"DIR a directory or https URL holding mnist.npz, cifar-10-python.tar.gz and a {MANIFEST} file "
    f"(README: Data offline)"
)


class DownloadError(PipelineError):
    pass


@dataclass(frozen=True)
class Source:
    location: str  # a local path, or an https URL (http on localhost)
    known_hash: str

    @property
    def is_local(self) -> bool:
        return "://" not in self.location


def _local_path(location: str) -> str | None:
    """The filesystem path of a mirror given as a path or a file:// URL; None for remote URLs."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return location if parsed.scheme == "" else None


def parse_manifest(text: str) -> dict[str, str]:
    """`sha256sum` output -> {file name: hex digest}."""
    digests = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        digests[name.strip().lstrip("*")] = digest.lower()
    return digests


def read_manifest(mirror: str) -> dict[str, str]:
    local = _local_path(mirror)
    try:
        if local is not None:
            text = (Path(local) / MANIFEST).read_text(encoding="utf-8")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                fetched = pooch.retrieve(
                    f"{mirror.rstrip('/')}/{MANIFEST}", known_hash=None, path=tmp,
                    fname=MANIFEST, progressbar=False,
                )
                text = Path(fetched).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise DownloadError(
            f"mirror {redact(mirror)} ({MIRROR_ENV}): cannot read its {MANIFEST} manifest ({_reason(exc)}); "
            f"a mirror must hold one, in `sha256sum` format"
        ) from None
    except Exception as exc:  # requests' errors: network failures reaching a remote mirror
        raise DownloadError(
            f"mirror {redact(mirror)} ({MIRROR_ENV}): cannot fetch its {MANIFEST} manifest ({_reason(exc)})"
        ) from None
    return parse_manifest(text)


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_mirror_scheme(mirror: str) -> None:
    """A directory, file:// or https://. The manifest that verifies a file travels the same way
    as the file, so plain http (which anyone on the path can rewrite) only on this machine."""
    parts = urlsplit(mirror)
    if parts.scheme in ("", "file", "https") or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return
    raise DownloadError(f"mirror {redact(mirror)} ({MIRROR_ENV}): {parts.scheme}:// is not allowed; "
                        "use https:// or a local directory (plain http only on localhost)")


def resolve_source(dataset: str, mirror: str | None) -> Source:
    archive = ARCHIVES[dataset]
    if not mirror:
        return Source(archive.url, archive.known_hash)
    check_mirror_scheme(mirror)
    digests = read_manifest(mirror)
    if archive.file_name not in digests:
        raise DownloadError(
            f"mirror {redact(mirror)} ({MIRROR_ENV}): its {MANIFEST} has no entry for {archive.file_name}"
        )
    local = _local_path(mirror)
    location = str(Path(local) / archive.file_name) if local is not None else (
        f"{mirror.rstrip('/')}/{archive.file_name}")
    return Source(location, f"sha256:{digests[archive.file_name]}")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


def fetch(source: Source, dest: Path, progressbar: bool) -> None:
    """Copy or download `source` to `dest` (a temporary path); retry transient network errors."""
    if source.is_local:
        try:
            shutil.copyfile(source.location, dest)
        except OSError as exc:
            raise DownloadError(
                f"{dest.name}: cannot read {redact(source.location)} ({_reason(exc)}); {MIRROR_HINT}"
            ) from None
        return
    import requests  # pooch's HTTP client; imported here to keep --help fast

    # known_hash=None: the checksum is verified below, where the actual digest can be reported.
    # pooch skips a download whose target exists and has no known hash: hand it a free name.
    dest.unlink(missing_ok=True)
    mirror = pooch.create(
        path=dest.parent, base_url="", registry={dest.name: None}, urls={dest.name: source.location},
        retry_if_failed=RETRIES,
    )
    try:
        mirror.fetch(dest.name, downloader=pooch.HTTPDownloader(progressbar=progressbar, timeout=60))
    except requests.exceptions.RequestException as exc:
        raise DownloadError(
            f"{dest.name}: cannot download {redact(source.location)} after {RETRIES + 1} attempts "
            f"({_reason(exc)}); {MIRROR_HINT}"
        ) from None


def verify_checksum(path: Path, source: Source, file_name: str) -> None:
    algorithm, _, expected = source.known_hash.partition(":")
    actual = pooch.file_hash(str(path), alg=algorithm)
    if actual != expected:
        raise DownloadError(
            f"{file_name}: {algorithm} checksum mismatch for {redact(source.location)}: expected {expected}, "
            f"got {actual} (truncated or corrupted download, or a wrong file); nothing was saved; "
            f"{MIRROR_HINT}"
        )


def verify_archive(dataset: str, path: Path) -> None:
    """Open the archive fully, so that a corrupt or incomplete one is refused before it lands."""
    try:
        if dataset == "mnist":
            with np.load(path, allow_pickle=False) as npz:
                for key in ("x_train", "y_train", "x_test", "y_test"):
                    npz[key]
        else:
            with tarfile.open(path, "r:gz") as tar:
                names = set()
                for member in tar:
                    names.add(member.name)
                    if member.isfile():
                        tar.extractfile(member).read()
                missing = [m for m in CIFAR_MEMBERS if m not in names]
                if missing:
                    raise ValueError(f"missing member {missing[0]}")
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DownloadError(
            f"{ARCHIVES[dataset].file_name}: the archive is corrupt or not in the expected layout "
            f"({_reason(exc)}); nothing was saved"
        ) from None


def download(dataset: str, out: Path, mirror: str | None, progressbar: bool) -> None:
    source = resolve_source(dataset, mirror)
    file_name = ARCHIVES[dataset].file_name
    with atomic_file(out) as tmp:
        fetch(source, tmp, progressbar)
        verify_checksum(tmp, source, file_name)
        verify_archive(dataset, tmp)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.download",
        description=__doc__.split("\n\n")[0],
        epilog=f"{MIRROR_ENV}: optional mirror (directory, file:// or https URL base; http only on localhost) with a "
        f"{MANIFEST} manifest; used instead of the canonical URLs.",
    )
    parser.add_argument("dataset", choices=sorted(ARCHIVES))
    parser.add_argument("out", type=Path, help="where the verified archive lands")
    args = parser.parse_args(argv)
    mirror = os.environ.get(MIRROR_ENV) or None
    download(args.dataset, args.out, mirror, progressbar=sys.stderr.isatty())
    print(f"{args.dataset}: {args.out} verified", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
