"""A simulated laptop webcam looking at a face photo, frame by frame, as the sign-in page streams it.

    from bench.webcam import Conditions, Webcam

    rng = np.random.default_rng(7)
    camera = Webcam(photo_rgb, rng, Conditions.draw(rng), face_box=box)
    for jpeg in camera.frames(12):      # JPEG bytes, the page's 640x480 at quality 80, 10 frames/s
        ...
    rgb = camera.render(3)              # frame 3 as an RGB array, before encoding

One ``Webcam`` is one session: the conditions (how far the student sits, the light, the camera's noise,
focus and shake) hold for the whole session; the head's sway, roll and distance drift smoothly over time
(``index / fps`` seconds); sensor noise and motion blur are fresh in every frame. Frame ``i`` is the
same whichever order frames are asked for (each frame draws from its own generator, seeded from the
session's), so a benchmark can cache frames by (photo, session, index).

What is modelled, and how (all in the photo's sRGB values; a webcam's own processing is not modelled):
* the face: the photo scaled so the face box is ``face_height`` px tall, centred near the middle of a
  ``frame_size`` frame over a plain background; a photo larger than the frame is cut by it;
* motion: sway of ``sway`` px (x; half of it in y), roll of ``roll`` degrees and scale changes of
  ``scale`` (a fraction), each a slow sine (0.2-0.8 Hz) with a random phase, plus a tremor of 0.3 px;
* light: pixel values times ``exposure``, clipped at 255 (a bright room clips highlights);
* blur: a Gaussian defocus of radius ``defocus`` px for the session, and per frame a linear motion blur
  of up to ``motion`` px in a random direction;
* noise: Gaussian, sigma ``noise`` grey levels, independent per pixel and channel, fresh per frame;
* encoding: JPEG at ``jpeg_quality`` (browsers' canvas.toBlob default is about 0.8-0.92).

A caller that needs something else in front of the camera for some frames (a turned head for a liveness
prompt) passes that photo to ``render`` / ``jpeg``: the session's motion, light and noise apply to it too.

Nothing here knows about faces beyond the box it is given: detection, recognition and scoring stay with
the callers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["LIGHTS", "Conditions", "Webcam", "encode_jpeg", "load_rgb"]

LIGHTS = ("dim", "normal", "bright")
# Per light, drawn per session: (exposure range, multiplier on the sensor noise). A dim room makes the
# camera raise its gain, hence more noise; a bright one clips.
_LIGHT = {
    "dim": ((0.35, 0.6), 1.5),
    "normal": ((0.85, 1.15), 1.0),
    "bright": ((1.3, 1.6), 1.0),
}
VERSION = 1  # bump when rendering changes: callers key caches on it


@dataclass(frozen=True)
class Conditions:
    """What holds for one session. ``draw`` makes a random one; fields may be set directly."""

    face_height: float = 180.0  # px, the face box's height in the frame
    light: str = "normal"  # a name for reports; ``exposure`` is what renders it
    exposure: float = 1.0
    noise: float = 3.0  # sensor noise sigma, grey levels
    defocus: float = 0.5  # Gaussian blur radius, px
    motion: float = 1.5  # largest motion blur per frame, px
    sway: float = 3.0  # px
    roll: float = 2.0  # degrees
    scale: float = 0.03  # fraction of the face size
    offset: tuple[float, float] = (0.0, 0.0)  # where the face sits, px from the frame's centre
    jpeg_quality: int = 80
    fps: float = 10.0
    frame_size: tuple[int, int] = (640, 480)  # width, height
    background: tuple[int, int, int] = (118, 122, 128)

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        *,
        light: str | None = None,
        face_height: float | None = None,
        face_heights: tuple[float, float] = (100.0, 250.0),
        noise: tuple[float, float] = (2.0, 6.0),
        **fixed: object,
    ) -> Conditions:
        """A session's conditions: the light (uniform over ``LIGHTS`` unless given), the face height
        (uniform in ``face_heights`` unless given), noise sigma uniform in ``noise`` (times the light's
        multiplier), slight defocus and shake, a few px of sway, 1-3 degrees of roll, 1-3 % scale, the
        face within 40 px (x) and 30 px (y) of the centre. ``fixed`` overrides any other field."""
        light = light if light is not None else LIGHTS[int(rng.integers(len(LIGHTS)))]
        if light not in _LIGHT:
            raise ValueError(f"light must be one of {LIGHTS}, not {light!r}")
        (lo, hi), noise_gain = _LIGHT[light]
        drawn = cls(
            face_height=float(face_height if face_height is not None else rng.uniform(*face_heights)),
            light=light,
            exposure=float(rng.uniform(lo, hi)),
            noise=float(rng.uniform(*noise) * noise_gain),
            defocus=float(rng.uniform(0.0, 1.0)),
            motion=float(rng.uniform(0.0, 2.5)),
            sway=float(rng.uniform(1.0, 5.0)),
            roll=float(rng.uniform(1.0, 3.0)),
            scale=float(rng.uniform(0.01, 0.03)),
            offset=(float(rng.uniform(-40, 40)), float(rng.uniform(-30, 30))),
            jpeg_quality=int(rng.integers(75, 86)),
        )
        return replace(drawn, **fixed) if fixed else drawn


def load_rgb(data: bytes) -> np.ndarray:
    """Image bytes (any format Pillow reads; EXIF rotation applied) as an RGB uint8 array."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        return np.asarray(ImageOps.exif_transpose(opened).convert("RGB")).copy()


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class Webcam:
    """One session of a webcam looking at ``photo`` (RGB uint8) under ``conditions``.

    ``face_box`` (x1, y1, x2, y2 in the photo's pixels) sets what ``conditions.face_height`` measures
    and what is centred; without it the whole photo counts as the face.
    """

    def __init__(
        self,
        photo: np.ndarray,
        rng: np.random.Generator,
        conditions: Conditions | None = None,
        *,
        face_box: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.photo = _as_rgb(photo)
        self.conditions = conditions or Conditions()
        self.face_box = face_box
        self._seed = int(rng.integers(2**63))
        # The slow motions: (frequency Hz, phase) for sway x, sway y, roll, scale.
        self._waves = [(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0, 2 * math.pi))) for _ in range(4)]

    def pose(self, index: int) -> tuple[float, float, float, float]:
        """(dx px, dy px, roll degrees, scale factor) of frame ``index``, before the per-frame tremor."""
        c = self.conditions
        t = index / c.fps
        wave = [math.sin(2 * math.pi * f * t + phase) for f, phase in self._waves]
        return c.sway * wave[0], 0.5 * c.sway * wave[1], c.roll * wave[2], 1.0 + c.scale * wave[3]

    def render(
        self,
        index: int,
        photo: np.ndarray | None = None,
        face_box: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (height, width, 3), before JPEG encoding."""
        c = self.conditions
        rng = np.random.default_rng([self._seed, index])
        source = self.photo if photo is None else _as_rgb(photo)
        box = face_box if photo is not None else self.face_box
        if box is None:
            box = (0.0, 0.0, float(source.shape[1]), float(source.shape[0]))
        dx, dy, roll, scale = self.pose(index)
        dx, dy = dx + rng.normal(0, 0.3), dy + rng.normal(0, 0.3)
        s = c.face_height / max(box[3] - box[1], 1.0) * scale
        width, height = c.frame_size
        fx, fy = width / 2 + c.offset[0] + dx, height / 2 + c.offset[1] + dy  # the face's centre in the frame
        px, py = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2  # and in the photo
        # PIL's affine maps each output pixel to an input one: photo = centre + R(-roll) (frame - centre) / s.
        # Rotating by +roll on screen (y down) turns the face clockwise.
        a = math.radians(roll)
        cos_a, sin_a = math.cos(a) / s, math.sin(a) / s
        coeffs = (
            cos_a, sin_a, px - cos_a * fx - sin_a * fy,
            -sin_a, cos_a, py + sin_a * fx - cos_a * fy,
        )  # fmt: skip
        image = Image.fromarray(source)
        if s < 0.75:  # shrinking a lot: filter first, as a camera's optics would (bilinear alone aliases)
            image = image.resize((max(1, round(image.width * s * 1.25)), max(1, round(image.height * s * 1.25))), Image.Resampling.LANCZOS)
            shrink = source.shape[1] / image.width
            coeffs = tuple(v / shrink for v in coeffs)
        frame = image.transform((width, height), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=c.background)
        pixels = np.asarray(frame, dtype=np.float32)
        # Blur only where the photo is (the background is flat): a few ms instead of ~20 on the frame.
        x0, y0, x1, y1 = _footprint(coeffs, image.size, frame.size, margin=4 + int(c.motion + c.defocus * 3))
        region = frame.crop((x0, y0, x1, y1))
        if c.defocus > 0.05:
            region = region.filter(ImageFilter.GaussianBlur(c.defocus))
        patch = np.asarray(region, dtype=np.float32)
        length = rng.uniform(0.0, c.motion)
        if length >= 1.0:
            patch = _motion_blur(patch, length, rng.uniform(0, math.pi))
        pixels[y0:y1, x0:x1] = patch
        pixels *= c.exposure
        pixels += _noise(rng, pixels.shape) * c.noise
        pixels += 0.5
        return np.clip(pixels, 0, 255).astype(np.uint8)

    def jpeg(self, index: int, photo: np.ndarray | None = None, face_box: tuple[float, float, float, float] | None = None) -> bytes:
        """Frame ``index`` as the page sends it: JPEG bytes."""
        return encode_jpeg(self.render(index, photo, face_box), self.conditions.jpeg_quality)

    def frames(self, count: int, *, start: int = 0) -> Iterator[bytes]:
        """Frames ``start`` .. ``start + count - 1`` as JPEG bytes, at the session's pace (``fps``)."""
        for index in range(start, start + count):
            yield self.jpeg(index)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _footprint(coeffs, photo_size, frame_size, margin: int) -> tuple[int, int, int, int]:
    """The frame rectangle the photo lands in (grown by ``margin``), from the inverse affine map."""
    a, b, c, d, e, f = coeffs
    det = a * e - b * d
    if abs(det) < 1e-12:
        return 0, 0, frame_size[0], frame_size[1]
    xs, ys = [], []
    for px, py in ((0, 0), (photo_size[0], 0), (0, photo_size[1]), photo_size):
        u, v = px - c, py - f  # solve [a b; d e] (x, y) = (u, v)
        xs.append((e * u - b * v) / det)
        ys.append((-d * u + a * v) / det)
    x0, y0 = max(0, int(min(xs)) - margin), max(0, int(min(ys)) - margin)
    x1, y1 = min(frame_size[0], int(max(xs)) + margin + 1), min(frame_size[1], int(max(ys)) + margin + 1)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, 0, 0
    return x0, y0, x1, y1


# Sensor noise comes from one bank of standard normals made once (a fixed seed), read at a random offset
# and stride per frame: drawing 0.9 M fresh normals cost 8 ms a frame, this about 1.
_BANK_SIZE = 1 << 22
_bank: np.ndarray | None = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    global _bank
    if _bank is None:
        _bank = np.random.default_rng(20261206).standard_normal(_BANK_SIZE, dtype=np.float32)
    n = math.prod(shape)
    if n > _BANK_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(_BANK_SIZE - n))
    out = _bank[start : start + n].reshape(shape)
    # A random flip and sign per frame: two frames sharing part of the bank still get different noise.
    if rng.integers(2):
        out = out[::-1]
    return -out if rng.integers(2) else out


def _motion_blur(pixels: np.ndarray, length: float, angle: float) -> np.ndarray:
    """The mean of the image shifted along ``angle`` over ``length`` px (whole-pixel steps)."""
    steps = int(round(length)) + 1
    out = np.zeros_like(pixels)
    for k in range(steps):
        d = k - (steps - 1) / 2
        sx, sy = int(round(d * math.cos(angle))), int(round(d * math.sin(angle)))
        out += np.roll(pixels, (sy, sx), axis=(0, 1))
    return out / steps
