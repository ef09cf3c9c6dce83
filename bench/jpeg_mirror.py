"""A copy of a data mirror whose CIFAR-10 images (train and test alike) went through JPEG once
more at one quality: train the pipeline on it and on the original mirror at equal epochs and
seeds, and the accuracy lost per JPEG pass shows how much the mirror's own JPEG decoding may cost.
(bench.jpeg_sensitivity only shifts the test images of a model trained on the mirror, which
measures a mismatch between train and test pixels, not the loss of detail itself.)

    python -m bench.jpeg_mirror SOURCE_MIRROR QUALITY DEST
    PIPELINE_DATA_MIRROR=DEST dvc repro      # in a scratch checkout

DEST gets the re-encoded cifar-10-python.tar.gz, the other files of SOURCE_MIRROR as they are,
and a SHA256SUMS manifest for all of them (the download stage checks it).
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pooch

from bench.jpeg_sensitivity import reencoded
from pipeline.common.outputs import atomic_file
from pipeline.download import ARCHIVES, CIFAR_DIR, CIFAR_MEMBERS, CIFAR_META, MANIFEST, read_manifest

IMAGE_MEMBERS = tuple(name for name in CIFAR_MEMBERS if name != f"{CIFAR_DIR}/{CIFAR_META}")


def reencoded_batch(batch: dict, quality: int) -> dict:
    """A Toronto CIFAR batch dict (bytes keys; b"data" rows are R, G, B planes of 32x32) with its
    images passed through JPEG at `quality`; labels and the other keys as they were."""
    images = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    passed = reencoded(np.ascontiguousarray(images), quality)
    return {**batch, b"data": passed.transpose(0, 3, 1, 2).reshape(len(passed), -1)}


def reencode_archive(source: Path, dest: Path, quality: int) -> None:
    """Copy cifar-10-python.tar.gz member by member, re-encoding every data and test batch."""
    with tarfile.open(source, "r:gz") as tar_in, tarfile.open(dest, "w:gz") as tar_out:
        for member in tar_in:
            if not member.isfile():
                tar_out.addfile(member)
                continue
            blob = tar_in.extractfile(member).read()
            if member.name in IMAGE_MEMBERS:
                batch = reencoded_batch(pickle.loads(blob, encoding="bytes"), quality)
                blob = pickle.dumps(batch, protocol=2)
                print(f"  {Path(member.name).name}: {len(batch[b'labels'])} images at quality {quality}", flush=True)
            member.size = len(blob)
            tar_out.addfile(member, io.BytesIO(blob))


def write_mirror(source: Path, quality: int, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in read_manifest(str(source)):
        if name == ARCHIVES["cifar10"].file_name:
            with atomic_file(dest / name) as partial:
                reencode_archive(source / name, partial, quality)
        else:
            shutil.copyfile(source / name, dest / name)
        lines.append(f"{pooch.file_hash(str(dest / name))}  {name}\n")
    (dest / MANIFEST).write_text("".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jpeg_mirror", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a mirror directory (python ../shared/datasets/make_mirror.py DIR)")
    parser.add_argument("quality", type=int, help="JPEG quality of the extra pass, 1-95")
    parser.add_argument("dest", type=Path, help="directory for the new mirror")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 95:
        parser.error(f"quality {args.quality}: say 1-95 (Pillow's useful range)")
    write_mirror(args.source, args.quality, args.dest)
    print(f"wrote {args.dest}: PIPELINE_DATA_MIRROR={args.dest} dvc repro")


if __name__ == "__main__":
    main()
