"""MNIST's conventions for a gray image of a digit: white ink on a black background, the digit
scaled into a 20x20 box and centred by its centre of mass in 28x28 (as LeCun et al. made the
dataset). A digit drawn dark on paper, or small somewhere on a large canvas, reaches the model as
the training digits did; an image already in MNIST's convention comes out as it was.
"""

from __future__ import annotations

import numpy as np

from pipeline.model.datasets import IMAGE_SIDES

INVERT = ("auto", "yes", "no")  # auto: a dark digit on a light background is inverted
FRAME = ("auto", "no")  # auto: the digit framed as MNIST's, where there is ink to frame
SIDE, BOX = IMAGE_SIDES["mnist"], 20  # the digit scaled to fit BOX x BOX, its centre of mass at (SIDE/2, SIDE/2)
# Ink: above the background by this share of the image's range (a photo's paper grain stays out of
# the crop); pixels next to it above the background (anti-aliased edges) join it.
INK_SHARE = 0.1


class ChoiceRejected(ValueError):
    """An inversion or framing choice that is not one, or not for this model; the message says which."""


def applies(record: dict) -> bool:
    """Whether the model's dataset is MNIST's digits (the others have no polarity or framing)."""
    return record["dataset"] == "mnist"


def check_choices(record: dict, invert: str, frame: str) -> None:
    for name, value, allowed in (("invert", invert, INVERT), ("frame", frame, FRAME)):
        if value not in allowed:
            raise ChoiceRejected(f"{name}={value!r}: give one of {', '.join(allowed)}")
    if not applies(record) and invert == "yes":
        raise ChoiceRejected(f"invert=yes: only an MNIST model takes digits to invert; this one is "
                             f"{record['dataset']}'s (leave invert at auto)")


def border(gray: np.ndarray) -> np.ndarray:
    """The pixels of the image's outer band (1/20 of its shorter side, at least one pixel)."""
    band = max(1, min(gray.shape) // 20)
    return np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(), gray[:, -band:].ravel()])


def background_level(gray: np.ndarray) -> float:
    """The background's level under a digit drawn bright, as high as its noise reaches (a photo's
    grain stays out of the crop): the 90th percentile of the image's outer band, of its pixels darker
    than halfway from the image's darkest to its brightest. Where strokes reach the edges (a digit
    cropped to its ink, a thick brush on a small canvas) the band holds ink, and ink is no background.
    Where under a tenth of the band is that dark, the band's own 90th percentile is bright anyway:
    the whole band counts (a flat image, or a dark digit on light paper kept so: no ink above it)."""
    band = border(gray)
    dark = band[band < (gray.min() + gray.max()) / 2]
    return float(np.percentile(dark if dark.size >= band.size / 10 else band, 90))


def dark_on_light(gray: np.ndarray) -> bool:
    """A background (the border's median) lighter than the image on average: the ink is darker."""
    return bool(np.median(border(gray)) > gray.mean())


def resized(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if gray.shape == (height, width):
        return gray.astype(np.float64)
    image = Image.fromarray(gray.astype(np.float32)).resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.float64)


def ink_box(gray: np.ndarray, background: float) -> tuple[slice, slice] | None:
    """The rows and columns that hold the digit, or None for an image without ink."""
    strong = gray - background > INK_SHARE * (gray.max() - background)
    if gray.max() <= background or not strong.any():
        return None
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    # grown by a pixel, then shrunk again to what is above the background there: the faint edges
    top, left = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    above = gray[top:rows[-1] + 2, left:cols[-1] + 2] > background
    rows, cols = np.flatnonzero(above.any(axis=1)) + top, np.flatnonzero(above.any(axis=0)) + left
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def framed(gray: np.ndarray) -> np.ndarray | None:
    """The digit on black, cropped to its ink, scaled to fit BOX x BOX keeping its aspect, its
    brightest ink white, and placed with its centre of mass at the middle of SIDE x SIDE (rounded,
    as MNIST's: the test set's digits come out unchanged). None where there is no ink."""
    background = background_level(gray)
    box = ink_box(gray, background)
    if box is None:
        return None
    crop = (gray[box] - background).clip(0)
    height, width = crop.shape
    scale = BOX / max(height, width)
    patch = resized(crop, max(1, round(width * scale)), max(1, round(height * scale)))
    patch *= 255 / patch.max()
    mass = patch.sum()
    centre = [(patch.sum(axis=axis) @ np.arange(patch.shape[1 - axis])) / mass for axis in (1, 0)]
    top, left = (int(np.clip(round(SIDE / 2 - c), 0, SIDE - n)) for c, n in zip(centre, patch.shape))
    out = np.zeros((SIDE, SIDE))
    out[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    return out


def convention(gray: np.ndarray, invert: str = "auto", frame: str = "auto") -> tuple[np.ndarray, list[str]]:
    """A gray image (any size, 0..255) as a 28x28 MNIST digit, and what was done to it, in words."""
    notes = []
    if invert == "yes" or (invert == "auto" and dark_on_light(gray)):
        gray = 255 - gray
        notes.append("inverted: dark on light" if invert == "auto" else "inverted")
    plain = resized(gray, SIDE, SIDE)
    digit = framed(gray) if frame == "auto" else None
    if digit is None:
        return plain, notes
    # said only where it changed the image (not for a digit already in MNIST's framing)
    if np.abs(digit - plain).max() > 2:
        notes.append("framed: cropped to the digit, scaled into 20x20, centred")
    return digit, notes
