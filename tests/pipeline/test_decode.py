"""facelogin.pipeline.decode on real photos and on files built from them."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from facelogin.pipeline import errors
from facelogin.pipeline.decode import LIVE_FORMATS, DecodeLimits, decode_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header (valid CRCs) for a greyscale image of the given size, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def portrait(faces_dir: Path) -> bytes:
    return (faces_dir / "photos" / "Tom_Cruise_avp_2014_4.jpg").read_bytes()  # 565x800 progressive JPEG


def test_it_decodes_a_real_jpeg_to_rgb_uint8(faces_dir: Path) -> None:
    image = decode_image((faces_dir / "photos" / "paul_rudd.jpg").read_bytes())
    assert image.shape == (2048, 1638, 3)
    assert image.dtype == np.uint8
    assert image.flags.writeable


def test_it_turns_a_greyscale_png_into_three_equal_channels(faces_dir: Path) -> None:
    image = decode_image((faces_dir / "yale" / "subject01" / "normal.png").read_bytes())
    assert image.shape == (243, 320, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


def test_it_refuses_pgm_live_but_reads_it_when_the_caller_widens_the_formats(faces_dir: Path) -> None:
    data = (faces_dir / "orl" / "s1" / "1.pgm").read_bytes()
    with pytest.raises(errors.NotAnImage):
        decode_image(data)
    image = decode_image(data, formats=(*LIVE_FORMATS, "PPM"))
    assert image.shape == (112, 92, 3)


def test_it_decodes_webp(portrait: bytes) -> None:
    original = decode_image(portrait)
    image = decode_image(encode(Image.fromarray(original), "WEBP", quality=90))
    assert image.shape == original.shape
    assert np.abs(image.astype(int) - original).mean() < 4


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1"])
def test_it_converts_other_modes_to_rgb(portrait: bytes, mode: str) -> None:
    original = Image.fromarray(decode_image(portrait))
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    image = decode_image(encode(original.convert(mode), fmt))
    assert image.shape == (800, 565, 3) and image.dtype == np.uint8
    if mode in ("RGBA", "CMYK"):  # opaque alpha / lossless colour round trip: the photo is unchanged
        assert np.abs(image.astype(int) - np.asarray(original)).mean() < 3


def test_transparent_pixels_become_white(portrait: bytes) -> None:
    rgba = Image.fromarray(decode_image(portrait)).convert("RGBA")
    alpha = np.full((800, 565), 255, dtype=np.uint8)
    alpha[:100] = 0
    rgba.putalpha(Image.fromarray(alpha))
    image = decode_image(encode(rgba, "PNG"))
    assert (image[:100] == 255).all()


def test_it_scales_16_bit_greyscale_instead_of_clipping_it(faces_dir: Path) -> None:
    grey = np.asarray(Image.open(faces_dir / "yale" / "subject02" / "normal.png").convert("L"), dtype=np.uint16)
    data = encode(Image.fromarray(grey * 257), "PNG")  # the same photo in 16 bits
    image = decode_image(data)
    assert np.abs(image[..., 0].astype(int) - grey).max() <= 1


def test_it_applies_exif_orientation(portrait: bytes) -> None:
    upright = Image.open(io.BytesIO(portrait)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(upright, "JPEG", quality=95, exif=exif.tobytes())
    image = decode_image(data)
    assert image.shape == (565, 800, 3)  # width and height swapped
    expected = np.rot90(np.asarray(upright), k=-1)  # clockwise
    assert np.abs(image.astype(int) - expected).mean() < 3


def test_max_side_shrinks_a_big_jpeg_through_draft_mode(faces_dir: Path) -> None:
    data = (faces_dir / "photos" / "paul_rudd.jpg").read_bytes()  # 1638x2048
    image = decode_image(data, max_side=640)
    assert image.shape == (640, 512, 3)
    full = Image.fromarray(decode_image(data)).resize((512, 640), Image.Resampling.BILINEAR)
    assert np.abs(image.astype(int) - np.asarray(full)).mean() < 3  # the same picture, cheaper


def test_max_side_shrinks_a_png_and_leaves_small_images_alone(faces_dir: Path) -> None:
    data = (faces_dir / "yale" / "subject01" / "normal.png").read_bytes()
    assert decode_image(data, max_side=160).shape == (122, 160, 3)
    assert decode_image(data, max_side=1000).shape == (243, 320, 3)


def test_empty_bytes_are_empty_image() -> None:
    with pytest.raises(errors.EmptyImage) as info:
        decode_image(b"")
    assert info.value.code == "empty"


def test_a_file_over_the_byte_cap_is_refused_before_opening(portrait: bytes) -> None:
    with pytest.raises(errors.ImageTooLarge):
        decode_image(portrait, DecodeLimits(max_bytes=len(portrait) - 1))
    decode_image(portrait, DecodeLimits(max_bytes=len(portrait)))  # the cap itself is allowed


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff" + b"\x00" * 10],
    ids=["text", "png-signature-only", "jpeg-soi-only"],
)
def test_bad_bytes_are_not_an_image(data: bytes) -> None:
    with pytest.raises(errors.NotAnImage):
        decode_image(data)


def test_a_gif_is_not_accepted_live(portrait: bytes) -> None:
    gif = encode(Image.open(io.BytesIO(portrait)).convert("P"), "GIF")
    with pytest.raises(errors.NotAnImage):
        decode_image(gif)


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.98])
def test_a_truncated_jpeg_raises_instead_of_decoding_grey(portrait: bytes, fraction: float) -> None:
    with pytest.raises(errors.TruncatedImage):
        decode_image(portrait[: int(len(portrait) * fraction)])


def test_a_truncated_jpeg_is_caught_in_draft_mode_too(faces_dir: Path) -> None:
    data = (faces_dir / "photos" / "paul_rudd.jpg").read_bytes()
    with pytest.raises(errors.TruncatedImage):
        decode_image(data[: len(data) // 2], max_side=640)


def test_a_truncated_png_raises(faces_dir: Path) -> None:
    data = (faces_dir / "yale" / "subject01" / "normal.png").read_bytes()
    with pytest.raises(errors.TruncatedImage):
        decode_image(data[: len(data) // 2])


def test_it_refuses_to_trust_decodes_when_truncated_loading_was_switched_on(
    portrait: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(errors.TruncatedImage):
        decode_image(portrait[: len(portrait) // 2])


def test_a_png_header_claiming_50000_squared_pixels_is_too_many_pixels() -> None:
    with pytest.raises(errors.TooManyPixels):  # Pillow's own DecompressionBombError, mapped
        decode_image(png_claiming(50_000, 50_000))


def test_pixels_are_counted_from_the_header_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(errors.TooManyPixels) as info:
        decode_image(png_claiming(8000, 6000))  # 48 MP: under Pillow's cap, over ours
    assert info.value.details["width"] == 8000


def test_a_real_small_file_with_huge_dimensions_is_too_many_pixels() -> None:
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")  # a real 48 MP black PNG of a few KB
    assert len(bomb) < 100_000
    with pytest.raises(errors.TooManyPixels):
        decode_image(bomb)


def test_a_jpeg_whose_frame_header_is_edited_to_60000_squared_is_too_many_pixels(portrait: bytes) -> None:
    baseline = encode(Image.open(io.BytesIO(portrait)), "JPEG", quality=90)  # the source is progressive
    sof = baseline.index(b"\xff\xc0")  # frame header: marker, length, precision, height, width
    forged = baseline[: sof + 5] + struct.pack(">HH", 60_000, 60_000) + baseline[sof + 9 :]
    with pytest.raises(errors.TooManyPixels):
        decode_image(forged)


def test_pillows_bomb_warning_is_an_error_too_when_warnings_are_errors() -> None:
    limits = DecodeLimits(max_pixels=10**9)  # ours out of the way: only Pillow's warning remains
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(errors.TooManyPixels):
            decode_image(png_claiming(10_000, 10_000), limits)  # 100 MP: Pillow warns above ~89 MP


def test_every_error_is_a_pipeline_error_with_a_code() -> None:
    for exc_type in (errors.EmptyImage, errors.ImageTooLarge, errors.NotAnImage, errors.TruncatedImage, errors.TooManyPixels):
        assert issubclass(exc_type, errors.ImageError)
        assert exc_type().code and exc_type().message


# --- login frames: their own small limits ------------------------------------------------------
LOGIN = DecodeLimits.login_frame()


def test_a_login_frame_over_1280_on_a_side_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for width, height in ((1281, 720), (720, 1281), (16383, 2441), (6324, 6324)):
        with pytest.raises(errors.TooManyPixels) as info:
            decode_image(png_claiming(width, height), LOGIN)
        assert (info.value.details["width"], info.value.details["height"]) == (width, height)


def test_a_real_webcam_sized_frame_is_a_login_frame_and_enrolment_keeps_its_larger_limit(portrait: bytes) -> None:
    assert decode_image(encode(Image.new("RGB", (1280, 720)), "JPEG"), LOGIN).shape == (720, 1280, 3)
    wide = encode(Image.new("L", (1600, 1200)), "PNG")
    with pytest.raises(errors.TooManyPixels):
        decode_image(wide, LOGIN)
    assert decode_image(wide, DecodeLimits()).shape == (1200, 1600, 3)  # an enrolment photo


def test_a_login_frame_over_the_frame_byte_cap_is_refused(portrait: bytes) -> None:
    assert len(portrait) > LOGIN.max_bytes // 8
    with pytest.raises(errors.ImageTooLarge):
        decode_image(portrait + b"\0" * LOGIN.max_bytes, LOGIN)


def test_16_bit_greyscale_is_scaled_without_a_float64_copy() -> None:
    import tracemalloc

    side = 1024
    ramp = (np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)
    data = encode(Image.fromarray(ramp), "PNG")
    tracemalloc.start()
    try:
        image = decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(image[..., 0], (ramp >> 8).astype(np.uint8))
    assert peak < side * side * 8  # less than one float64 copy of the image (the old path made two)
