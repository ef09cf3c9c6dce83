"""bench.jpeg_mirror: a mirror the download stage accepts, with CIFAR's pixels (only) re-encoded."""

import numpy as np

from bench import jpeg_mirror
from pipeline.download import download
from pipeline.preprocess import load_cifar10
from tests.datasets import write_mirror


def test_mirror_copy_has_cifar_reencoded_in_place_and_passes_the_download_check(tmp_path):
    source = write_mirror(tmp_path / "source")
    jpeg_mirror.write_mirror(source, 50, tmp_path / "q50")

    for dataset, name in (("mnist", "mnist.npz"), ("cifar10", "cifar-10-python.tar.gz")):
        download(dataset, tmp_path / "raw" / name, str(tmp_path / "q50"), progressbar=False)
    assert (tmp_path / "raw" / "mnist.npz").read_bytes() == (source / "mnist.npz").read_bytes()

    before = load_cifar10(source / "cifar-10-python.tar.gz")
    after = load_cifar10(tmp_path / "raw" / "cifar-10-python.tar.gz")
    for images_before, labels_before, images_after, labels_after in (
        (before[0], before[1], after[0], after[1]), (before[2], before[3], after[2], after[3])
    ):
        np.testing.assert_array_equal(labels_after, labels_before)
        error = np.abs(images_after.astype(int) - images_before).mean(axis=(1, 2, 3))
        # every image changed, each stayed itself (reading the R, G, B planes as pixels: > 30 levels off)
        assert error.min() > 0 and error.max() < 20
