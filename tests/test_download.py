"""download stage: mirrors (directory, file://, http), verification, and clean failures."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading

import pytest

from pipeline import download as dl
from pipeline.common.errors import redact
from pipeline.download import DownloadError, download
from tests.datasets import sha256
from tests.helpers import REPO, free_port, project_env


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def own_mirror(tmp_path, mirror):
    copy = tmp_path / "mirror"
    shutil.copytree(mirror, copy)
    return copy


@pytest.mark.parametrize("as_url", [False, True], ids=["directory", "file-url"])
def test_local_mirror(tmp_path, own_mirror, as_url):
    out = tmp_path / "raw" / "mnist.npz"
    download("mnist", out, own_mirror.as_uri() if as_url else str(own_mirror), progressbar=False)
    assert sha256(out) == sha256(own_mirror / "mnist.npz")
    assert _files(out.parent) == ["mnist.npz"]


@pytest.fixture
def http_mirror(own_mirror):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(own_mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_mirror(tmp_path, http_mirror, own_mirror):
    out = tmp_path / "raw" / "cifar-10-python.tar.gz"
    download("cifar10", out, http_mirror, progressbar=False)
    assert sha256(out) == sha256(own_mirror / "cifar-10-python.tar.gz")
    assert _files(out.parent) == ["cifar-10-python.tar.gz"]


def _expect_failure(dataset, out, mirror, *fragments):
    """One-line DownloadError with every fragment in it, and nothing left where `out` goes."""
    with pytest.raises(DownloadError) as caught:
        download(dataset, out, mirror, progressbar=False)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.parent.exists() or _files(out.parent) == []


def test_checksum_mismatch_reports_both_hashes_and_keeps_nothing(tmp_path, own_mirror):
    real = sha256(own_mirror / "mnist.npz")
    wrong = "0" * 64
    (own_mirror / "SHA256SUMS").write_text(f"{wrong}  mnist.npz\n")
    out = tmp_path / "raw" / "mnist.npz"
    _expect_failure("mnist", out, str(own_mirror), "mnist.npz", "checksum mismatch", f"expected {wrong}", f"got {real}",
                    str(own_mirror / "mnist.npz"), dl.MIRROR_ENV)


def test_truncated_archive_fails_checksum_then_retry_after_fix_succeeds(tmp_path, own_mirror):
    archive = own_mirror / "cifar-10-python.tar.gz"
    good = archive.read_bytes()
    archive.write_bytes(good[: len(good) // 2])
    out = tmp_path / "raw" / "cifar-10-python.tar.gz"
    _expect_failure("cifar10", out, str(own_mirror), "cifar-10-python.tar.gz", "checksum mismatch")
    archive.write_bytes(good)
    download("cifar10", out, str(own_mirror), progressbar=False)
    assert sha256(out) == sha256(archive)


def test_corrupt_archive_with_matching_manifest_is_refused(tmp_path, own_mirror):
    archive = own_mirror / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:5000])
    (own_mirror / "SHA256SUMS").write_text(f"{sha256(archive)}  cifar-10-python.tar.gz\n")
    out = tmp_path / "raw" / "cifar-10-python.tar.gz"
    _expect_failure("cifar10", out, str(own_mirror), "cifar-10-python.tar.gz", "corrupt")


def test_mirror_without_manifest(tmp_path, own_mirror):
    (own_mirror / "SHA256SUMS").unlink()
    _expect_failure("mnist", tmp_path / "raw" / "mnist.npz", str(own_mirror), "SHA256SUMS", str(own_mirror))


def test_manifest_without_entry(tmp_path, own_mirror):
    (own_mirror / "SHA256SUMS").write_text("")
    _expect_failure("mnist", tmp_path / "raw" / "mnist.npz", str(own_mirror), "no entry for mnist.npz")


def test_unreachable_host_after_retries(tmp_path, own_mirror, monkeypatch):
    port = free_port()
    monkeypatch.setattr(dl, "RETRIES", 1)
    monkeypatch.setattr(dl, "ARCHIVES", {**dl.ARCHIVES, "mnist": dl.Archive(
        "mnist.npz", f"http://127.0.0.1:{port}/mnist.npz", "sha256:" + "0" * 64)})
    _expect_failure("mnist", tmp_path / "raw" / "mnist.npz", None, "cannot download", f"127.0.0.1:{port}", "2 attempts",
                    "PIPELINE_DATA_MIRROR=DIR make quick")


def test_cli_failure_is_one_line(tmp_path, own_mirror):
    (own_mirror / "SHA256SUMS").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.download", "mnist", str(tmp_path / "mnist.npz")],
        cwd=REPO, env=project_env(PIPELINE_DATA_MIRROR=str(own_mirror)), capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: mirror ")
    assert not (tmp_path / "mnist.npz").exists()


@pytest.mark.parametrize("mirror", ["http://example.org/data", "ftp://example.org/data",
                                    "http://user:secret@example.org/data"])
def test_mirror_must_be_https_or_local(tmp_path, mirror):
    with pytest.raises(DownloadError) as caught:
        download("mnist", tmp_path / "mnist.npz", mirror, progressbar=False)
    message = str(caught.value)
    assert "is not allowed; use https:// or a local directory" in message
    assert "secret" not in message and not (tmp_path / "mnist.npz").exists()


def test_credentials_in_a_uri_never_reach_a_message():
    assert redact("https://user:secret@example.org:8443/data?x=1") == "https://***@example.org:8443/data?x=1"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
