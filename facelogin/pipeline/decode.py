"""Bytes from the outside world → an RGB ``uint8`` array, refusing anything that could hurt the worker.

Order of checks (cheapest first, nothing decoded before it is known to be safe):
1. empty / over ``max_bytes``: from ``len(data)`` alone;
2. format: Pillow identifies the file from its header, only among ``formats`` (JPEG, PNG, WebP live);
3. ``width * height`` from the header against ``max_pixels``, and each side against ``max_dimension`` —
   a 50,000 x 50,000 PNG of a few KB is refused here, before any pixel is inflated (Pillow's own
   DecompressionBombError is mapped too);
4. decode, with truncation an error (Pillow's default ``LOAD_TRUNCATED_IMAGES = False``: a cut-off
   JPEG raises instead of decoding as a grey lower half);
5. EXIF orientation applied, then converted to RGB, never through a wider type than the image's own
   (a 16-bit grey image is scaled as 16-bit integers, not copied as float64).

Login frames come from a webcam and get their own, small limits (``DecodeLimits.login_frame``): small
files that decode huge (a 78 KB 16-bit 6324x6324 PNG, a 1.6 KB lossless 16383x2441 WebP) cost a worker
0.6-1.1 s and +0.5-0.9 GB each under the enrolment photo's 40 MP.

With ``max_side`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale inside the DCT (``Image.draft``), which
costs almost nothing, then resized so its long side is at most ``max_side``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import errors

# What a browser or phone sends. Benchmarks reading ORL's PGM files pass a broader tuple.
LIVE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")


@dataclass(frozen=True)
class DecodeLimits:
    # A 12 MP phone JPEG is 3-6 MB; a 640x480 webcam frame ~40 KB. 10 MB leaves room and caps memory.
    max_bytes: int = 10 * 1024 * 1024
    # 40 MP = 120 MB of RGB once decoded; above that it is a bomb or a photo nobody needs at full size.
    max_pixels: int = 40_000_000
    # Longest allowed width or height (None: only max_pixels applies).
    max_dimension: int | None = None

    @classmethod
    def login_frame(cls, *, max_bytes: int = 512 * 1024, max_side: int = 1280) -> DecodeLimits:
        """A sign-in frame: what a webcam sends (the page sends 640 px; 1280x1280 at most)."""
        return cls(max_bytes=max_bytes, max_pixels=max_side * max_side, max_dimension=max_side)


def decode_image(
    data: bytes | bytearray | memoryview,
    limits: DecodeLimits | None = None,
    *,
    max_side: int | None = None,
    formats: Sequence[str] = LIVE_FORMATS,
) -> np.ndarray:
    """Decode ``data`` to an RGB ``uint8`` array of shape (H, W, 3), EXIF orientation applied.

    Raises ``errors.EmptyImage``, ``ImageTooLarge``, ``NotAnImage``, ``TooManyPixels`` or
    ``TruncatedImage``; nothing else escapes for any input bytes (fuzzed in test_boundaries.py).
    """
    limits = limits or DecodeLimits()
    if data is None or len(data) == 0:
        raise errors.EmptyImage()
    if len(data) > limits.max_bytes:
        raise errors.ImageTooLarge(size=len(data), limit=limits.max_bytes)

    im = _open(bytes(data), tuple(f.upper() for f in formats))
    try:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise errors.NotAnImage(width=width, height=height)
        if width * height > limits.max_pixels:
            raise errors.TooManyPixels(width=width, height=height, limit=limits.max_pixels)
        if limits.max_dimension is not None and max(width, height) > limits.max_dimension:
            raise errors.TooManyPixels(width=width, height=height, limit=limits.max_dimension)

        if max_side is not None and im.format in ("JPEG", "MPO") and max(width, height) > max_side:
            # draft() keeps the decoded size >= the requested one, so the resize below only shrinks.
            ratio = max_side / max(width, height)
            im.draft("RGB", (max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))))

        _load(im)
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception:  # noqa: BLE001 - a corrupt EXIF block must not cost the user the photo
            pass
        rgb = _to_rgb(im)
        if max_side is not None and max(rgb.size) > max_side:
            scale = max_side / max(rgb.size)
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            # BILINEAR in Pillow widens its support when shrinking, so it anti-aliases like an area filter.
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.array(rgb, dtype=np.uint8)  # a writable copy, independent of Pillow's buffer
    finally:
        im.close()


def _open(data: bytes, formats: tuple[str, ...]) -> ImageFile.ImageFile:
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:  # over twice Pillow's own cap (~179 MP)
        raise errors.TooManyPixels(detail=str(exc)) from exc
    except Image.DecompressionBombWarning as exc:  # only raised when warnings are errors (-W error)
        raise errors.TooManyPixels(detail=str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise errors.NotAnImage() from exc
    except Exception as exc:  # noqa: BLE001 - plugins raise assorted errors on hostile headers
        raise errors.NotAnImage(detail=f"{type(exc).__name__}: {exc}") from exc
    return im  # type: ignore[return-value]


def _load(im: Image.Image) -> None:
    # LOAD_TRUNCATED_IMAGES is a process-wide switch; flipping it here would race other threads. The
    # default (False) makes Pillow raise OSError on a cut-off file; if someone turned it on globally we
    # cannot trust a "successful" decode, so refuse rather than return a half-grey face.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise errors.TruncatedImage(detail="PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; refusing to decode")
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise errors.TooManyPixels(detail=str(exc)) from exc
    except Image.DecompressionBombWarning as exc:
        raise errors.TooManyPixels(detail=str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        # OSError "image file is truncated", "broken data stream"; SyntaxError "broken PNG file" (CRC).
        raise errors.TruncatedImage(detail=f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - whatever a decoder throws, the user gets a clean error
        raise errors.TruncatedImage(detail=f"{type(exc).__name__}: {exc}") from exc


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit / float greyscale: convert("L") clips at 255, which would make most 16-bit PNGs
        # white. Scaled in the image's own type (a float64 copy cost 8 bytes a pixel, twice).
        arr = np.asarray(im)
        if mode == "F":
            top = max(float(arr.max(initial=0)), 1.0)
            grey = np.clip(arr * np.float32(255.0 / top), 0, 255).astype(np.uint8)
        elif mode.startswith("I;16") or arr.max(initial=0) > 255:
            grey = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8) if mode == "I" else (arr >> 8).astype(np.uint8)
        else:
            grey = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        # Transparent pixels carry arbitrary colour; show them on white like a browser page would.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK (Pillow inverts Adobe CMYK JPEGs), YCbCr, LAB, HSV
