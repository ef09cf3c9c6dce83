"""Image files as people have them (dark on light, transparent, 16-bit, float, palette, EXIF-rotated,
animated, a small digit anywhere on a large canvas, a header that declares too many pixels) reach an
MNIST model as MNIST's digits: each built here as a real file and decoded by Pillow."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench import framing
from pipeline.serving import digits, images

MNIST = {"dataset": "mnist", "color": "gray", "side": 28, "gray_weights": [0.299, 0.587, 0.114],
         "normalization": {"method": "per_image"}, "class_names": [str(i) for i in range(10)]}


def seven(canvas: tuple[int, int], top: int, left: int, height: int) -> np.ndarray:
    """A white 7, `height` pixels tall, drawn on black (canvas: width, height)."""
    image = Image.new("L", canvas, 0)
    stroke = max(2, height // 6)
    corner = (left + 0.7 * height, top + stroke / 2)
    ImageDraw.Draw(image).line([(left, top + stroke / 2), corner, (left + 0.3 * height, top + height - stroke / 2)],
                               fill=255, width=stroke)
    return np.asarray(image)


def mnist_framed() -> np.ndarray:
    """A 7 framed as MNIST's digits were: its ink 20 pixels on its longer side, its centre of mass
    at (14, 14) rounded."""
    drawn = seven((40, 40), 8, 8, 21)
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    ink = drawn[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    assert max(ink.shape) == 20, ink.shape  # the drawing itself is MNIST-sized: nothing to scale
    mass = ink.sum()
    top = round(14 - (ink.sum(axis=1) @ np.arange(ink.shape[0])) / mass)
    left = round(14 - (ink.sum(axis=0) @ np.arange(ink.shape[1])) / mass)
    digit = np.zeros((28, 28), np.uint8)
    digit[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    return digit


DIGIT = mnist_framed()


def file_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def served(data: bytes, invert="auto", frame="auto") -> tuple[np.ndarray, list[str]]:
    x, notes = images.pixels(images.decode(data), MNIST, invert, frame)
    return x[..., 0], notes


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    return tuple((x.sum(axis=1 - axis) @ np.arange(x.shape[axis])) / x.sum() for axis in (0, 1))


RAMP = np.array([[0, 64, 128, 255]], np.uint8)  # 8-bit gray levels, as each file stores them


def gray_file(mode: str) -> bytes:
    if mode == "1":
        return file_bytes(Image.fromarray(RAMP > 100), "PNG")
    if mode == "LA":
        return file_bytes(Image.fromarray(np.dstack([RAMP, np.full_like(RAMP, 255)]), "LA"), "PNG")
    if mode == "P":
        palette = Image.fromarray(np.arange(4, dtype=np.uint8)[None]).convert("P")
        palette.putpalette([level for value in RAMP[0] for level in (value,) * 3])
        return file_bytes(palette, "PNG")
    if mode == "I;16":
        return file_bytes(Image.fromarray(RAMP.astype(np.uint16) * 257), "PNG")
    if mode == "I;16B":
        return file_bytes(Image.fromarray((RAMP.astype(np.uint16) * 257).astype(">u2")), "TIFF")
    if mode == "I":
        return file_bytes(Image.fromarray(RAMP.astype(np.int32) * 257), "TIFF")
    if mode == "F":
        return file_bytes(Image.fromarray(RAMP.astype(np.float32) / 255), "TIFF")
    return file_bytes(Image.fromarray(RAMP), "PNG")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "I;16", "I;16B", "I", "F"])
def test_every_gray_depth_arrives_scaled_to_0_255(mode):
    image = images.decode(gray_file(mode))
    assert image.mode == mode  # the file is what the case says
    values, gray = images.in_convention(image)
    expected = np.where(RAMP > 100, 255, 0) if mode == "1" else RAMP
    assert gray
    np.testing.assert_allclose(values, expected, atol=1e-3)


def test_a_digit_in_mnists_framing_comes_out_as_it_was():
    x, notes = served(file_bytes(Image.fromarray(DIGIT), "PNG"))
    np.testing.assert_array_equal(x, DIGIT)
    assert notes == []


@pytest.mark.parametrize("kind", ["dark on light", "black strokes on transparent RGBA",
                                  "black strokes on transparent LA", "16-bit", "first frame of an animation",
                                  "large dark-on-light RGB"])
def test_each_kind_of_file_reaches_the_model_as_the_white_on_black_digit(kind):
    if kind == "dark on light":
        data = file_bytes(Image.fromarray(255 - DIGIT), "PNG")
    elif kind == "black strokes on transparent RGBA":
        data = file_bytes(Image.fromarray(np.dstack([np.zeros((28, 28, 3), np.uint8), DIGIT]), "RGBA"), "PNG")
    elif kind == "black strokes on transparent LA":
        data = file_bytes(Image.fromarray(np.dstack([np.zeros_like(DIGIT), DIGIT]), "LA"), "PNG")
    elif kind == "16-bit":
        data = file_bytes(Image.fromarray(DIGIT.astype(np.uint16) * 257), "PNG")
    elif kind == "first frame of an animation":
        frames = [Image.fromarray(DIGIT), Image.fromarray(DIGIT.T.copy())]
        data = file_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    else:
        large = Image.fromarray(255 - DIGIT).resize((280, 280), Image.NEAREST).convert("RGB")
        data = file_bytes(large, "PNG")
    x, notes = served(data)
    if kind == "large dark-on-light RGB":  # scaled down and up again: the same digit, not the same pixels
        assert np.corrcoef(x.ravel(), DIGIT.ravel())[0, 1] > 0.95
    else:
        np.testing.assert_allclose(x, DIGIT, atol=1)
    assert ("inverted: dark on light" in notes) == (kind != "16-bit" and kind != "first frame of an animation")


def test_inversion_follows_the_choice():
    light = file_bytes(Image.fromarray(255 - DIGIT), "PNG")
    kept, notes = served(light, invert="no")
    np.testing.assert_array_equal(kept, 255 - DIGIT)
    assert notes == []
    forced, notes = served(file_bytes(Image.fromarray(DIGIT), "PNG"), invert="yes", frame="no")
    np.testing.assert_array_equal(forced, 255 - DIGIT)
    assert notes == ["inverted"]


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation():
    large = Image.fromarray(DIGIT).resize((112, 112), Image.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left: shown after a quarter turn right
    data = file_bytes(large.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=95)
    x, _ = served(data, frame="no")
    assert np.abs(x - DIGIT).mean() < 8
    assert np.abs(np.rot90(x) - DIGIT).mean() > 20  # what it was without the turn: not the digit


def test_a_small_digit_off_centre_on_a_large_canvas_is_framed_as_mnists():
    canvas = 255 - seven((300, 280), 20, 190, 60)  # dark on light, in a corner
    x, notes = served(file_bytes(Image.fromarray(canvas), "PNG"))
    rows, cols = np.flatnonzero((x > 0).any(axis=1)), np.flatnonzero((x > 0).any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20
    np.testing.assert_allclose(centre_of_mass(x), (14, 14), atol=0.5)
    assert x.max() == pytest.approx(255)
    assert np.corrcoef(x.ravel(), DIGIT.ravel())[0, 1] > 0.8  # the same 7 as drawn at MNIST's size
    assert notes == ["inverted: dark on light", "framed: cropped to the digit, scaled into 20x20, centred"]
    unframed, notes = served(file_bytes(Image.fromarray(canvas), "PNG"), frame="no")
    assert notes == ["inverted: dark on light"] and np.corrcoef(unframed.ravel(), DIGIT.ravel())[0, 1] < 0.5


def test_the_background_is_found_where_strokes_cover_much_of_the_border():
    """Grainy paper at 40 under two bright bars that cross the whole image: half the outer band is ink."""
    gray = np.random.default_rng(0).normal(40, 4, (60, 60))
    gray[15:45, :] = gray[:, 15:45] = 230
    assert np.percentile(digits.border(gray), 90) == 230  # the band's own 90th percentile: ink
    assert 40 < digits.background_level(gray) < 40 + 3 * 4  # the paper, up to its grain
    assert digits.background_level(np.full((20, 20), 90.0)) == 90  # flat: nothing above it


def correlation(x: np.ndarray, digit: np.ndarray) -> float:
    return float(np.corrcoef(x.ravel(), digit.ravel())[0, 1])


def test_a_low_resolution_scan_cropped_to_the_digit_is_framed_as_mnists():
    """The 7 cropped to a square around its ink, reduced to 8x8 and enlarged to 112 pixels, dark on light."""
    scan = 255 - framing.low_resolution(framing.squared(DIGIT), 8, 112)
    x, notes = served(file_bytes(Image.fromarray(scan), "PNG"))
    assert correlation(x, DIGIT) > 0.75
    assert notes == ["inverted: dark on light", "framed: cropped to the digit, scaled into 20x20, centred"]


@pytest.mark.parametrize("kind", ["coarse, dark on light", "coarse, light on dark", "cropped to its ink"])
def test_thick_strokes_touching_every_edge_are_framed_as_mnists(kind):
    """The 7 drawn thicker and cropped to its ink (its strokes touch all four edges): coarse (10 pixels
    enlarged 11 times), or as it is; framed, it is that thick 7 in MNIST's framing, and closer to it
    than the image left unframed."""
    size = 3 if kind == "cropped to its ink" else 5
    thick = framing.thicker(DIGIT, size)
    image = framing.inked(thick) if kind == "cropped to its ink" else \
        framing.low_resolution(framing.inked(thick), 10, 110)
    data = file_bytes(Image.fromarray(255 - image if kind.endswith("dark on light") else image), "PNG")
    (x, _), (unframed, _) = served(data), served(data, frame="no")
    assert correlation(x, thick) > 0.8 and correlation(x, thick) > correlation(unframed, thick)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_is_worked_on_at_a_working_size_and_its_digit_still_found(fmt):
    """A 12-megapixel photo of a digit: decoded small (JPEG) or scaled down right after, and still
    framed as the 7 it shows."""
    photo = Image.fromarray(255 - seven((3000, 4000), 900, 1500, 1200)).convert("RGB")
    data = file_bytes(photo, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    assert max(images.decode(data).size) <= images.WORKING_SIDE
    x, notes = served(data)
    assert np.corrcoef(x.ravel(), DIGIT.ravel())[0, 1] > 0.8 and notes[0] == "inverted: dark on light"


def declaring(png: bytes, width: int, height: int) -> bytes:
    """The PNG file with a header (IHDR: width and height after its first 16 bytes) that declares
    another size than its data hold."""
    data = bytearray(png)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_the_pixel_cap_is_checked_on_the_declared_size_before_decoding():
    # 8000x8000: over the cap, under Pillow's own check; the data, too short, are never decoded
    data = declaring(file_bytes(Image.fromarray(DIGIT), "PNG"), 8_000, 8_000)
    with pytest.raises(images.ImageRejected, match=r"8000x8000 pixels: more than 50,000,000 pixels"):
        images.decode(data)


def test_wrong_choices_are_refused_with_what_to_give():
    with pytest.raises(digits.ChoiceRejected, match="invert='maybe': give one of auto, yes, no"):
        digits.check_choices(MNIST, "maybe", "auto")
    with pytest.raises(digits.ChoiceRejected, match="invert=yes: only an MNIST model"):
        digits.check_choices({**MNIST, "dataset": "cifar10"}, "yes", "auto")
