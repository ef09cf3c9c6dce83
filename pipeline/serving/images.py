"""Raw image bytes -> the arrays a model was trained on, by the preprocessing record the
register stage writes beside the model (`preprocessing.json`).

Every image is first put in the convention of the dataset's files: upright by its EXIF
orientation, its first frame, transparency laid on a background, any gray depth scaled to 0..255;
an MNIST model's digit then as MNIST's were (pipeline/serving/digits.py). The record, not an
import of the preprocess stage, carries the gray weights and the normalization: the served model
loads without the project (tests/test_serving.py holds that this conversion gives the preprocess
stage's arrays).
"""

from __future__ import annotations

import io

import numpy as np

from pipeline.serving import digits

# The most pixels an image may declare, read from its header before it is decoded (a 50-megapixel
# photo); Pillow's own decompression-bomb check, at 89 M, stays behind it.
PIXEL_CAP = 50_000_000
# The longest side an image is worked on at (a 28- or 32-pixel model input): a phone photo is scaled
# down while it is decoded (JPEG) or right after, not carried through the conversions at 12 megapixels.
WORKING_SIDE = 1024
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # PIL modes of 16-bit gray: scaled by their depth
# PIL modes of one gray channel (alpha aside): taken as gray (MNIST's digits, a gray scan), not weighted
GRAY_MODES = ("1", "L", "LA", "La", "I", "F", *SIXTEEN_BIT)


class ImageRejected(ValueError):
    """Bytes that are no image, or an image the model's dataset cannot take; the message says which."""


def unreadable(exc: Exception) -> ImageRejected:
    return ImageRejected(f"an unreadable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


def decode(data: bytes):
    """The image in `data`, upright by its EXIF orientation and fully read (its first frame, for an
    animation): a truncated file fails here, not later."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    too_large = f"more than {PIXEL_CAP:,} pixels (scale it down)"
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image (PIL reads PNG, JPEG, GIF, BMP, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError:
        raise ImageRejected(too_large) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise unreadable(exc) from None
    width, height = image.size  # as the header declares it: nothing is decoded yet
    if width * height > PIXEL_CAP:
        raise ImageRejected(f"{width}x{height} pixels: {too_large}")
    if image.format == "JPEG":  # decoded at a fraction of its size, no smaller than WORKING_SIDE
        image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if max(image.size) > WORKING_SIDE and image.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
            image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    except Image.DecompressionBombError:  # a later part larger than the header said (a GIF's frame)
        raise ImageRejected(too_large) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise unreadable(exc) from None
    return image


def gray_palette(image) -> bool:
    """A palette image whose colors in use are all gray."""
    palette = image.getpalette("RGB")
    return all(palette[3 * index] == palette[3 * index + 1] == palette[3 * index + 2]
               for _, index in image.getcolors(256))


def scaled_gray(image) -> np.ndarray:
    """One gray channel as float64 in 0..255: 16-bit by its depth; 32-bit integers and floats by the
    range of their values (0..1, 0..255 or 0..65535 where they fit, else their own minimum..maximum)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode in SIXTEEN_BIT:
        return values * (255 / 65535)
    if image.mode not in ("I", "F"):
        return values
    low, high = values.min(), values.max()
    for top in (1.0, 255.0, 65535.0):
        if low >= 0 and high <= top and (top > 1 or image.mode == "F"):
            return values * (255 / top)
    span = high - low
    return (values - low) * (255 / span) if span else np.zeros_like(values)


def composited(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Transparency laid on a background that contrasts with what is drawn (black strokes on a
    transparent canvas become black on white; white ones, white on black): the drawing, not a
    blank, whatever the app's choice."""
    if alpha.min() == 255:
        return color
    weight = alpha / 255
    shade = np.average(color.mean(axis=-1) if color.ndim == 3 else color, weights=weight) if weight.any() else 255
    background = 255.0 if shade < 128 else 0.0
    weight = weight[..., None] if color.ndim == 3 else weight
    return color * weight + background * (1 - weight)


def in_convention(image) -> tuple[np.ndarray, bool]:
    """The image as float64 in 0..255, (H, W) gray or (H, W, 3) RGB, its alpha composited; whether gray."""
    if image.mode == "P":
        image = image.convert("LA" if gray_palette(image) else "RGBA")
    if image.mode in ("1", "La"):
        image = image.convert("L" if image.mode == "1" else "LA")
    if image.mode == "LA":
        values = np.asarray(image, dtype=np.float64)
        return composited(values[..., 0], values[..., 1]), True
    if image.mode in GRAY_MODES:
        return scaled_gray(image), True
    values = np.asarray(image.convert("RGBA"), dtype=np.float64)
    return composited(values[..., :3], values[..., 3]), False


def pixels(image, record: dict, invert: str = "auto", frame: str = "auto") -> tuple[np.ndarray, list[str]]:
    """One decoded image as (side, side, channels) float32, converted as the training data were
    (gray by the record's weights; an image already gray is taken as it is), and what was done to
    it beyond that, in words (an MNIST digit inverted or framed)."""
    from PIL import Image

    side, color = record["side"], record["color"]
    values, gray = in_convention(image)
    if color == "rgb":
        if gray:
            raise ImageRejected(f"a gray image; this model ({record['dataset']}, in color) was trained on color "
                                "images and cannot take one without colors")
        rgb = Image.fromarray(values.round().astype(np.uint8)).resize((side, side), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.float32), []
    if not gray:  # as preprocess.to_gray: weighted in float64
        values = values @ np.asarray(record["gray_weights"])
    if digits.applies(record):
        digit, notes = digits.convention(values, invert, frame)
        return digit[..., None].astype(np.float32), notes
    return digits.resized(values, side, side)[..., None].astype(np.float32), []


def normalize(x: np.ndarray, normalization: dict) -> np.ndarray:
    """The training data's normalization: the training split's mean/std, or each image's own."""
    x = x.astype(np.float64)
    if normalization["method"] == "zscore":
        mean, std = np.asarray(normalization["mean"]), np.asarray(normalization["std"])
        return ((x - mean) / std).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)

