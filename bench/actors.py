"""Who stands in front of the sign-in camera in bench.attacks: a student, or an attacker with what is easy to
get (the student's photos, a recording of them), each answering the server's prompts as well as they can.

Every actor is asked for one frame at a time, with the time since the attempt began and the server's last
message (``hello`` or a frame's answer, with its ``challenge``: the prompt and the colour the page shows).
It returns the scene as the camera would see it: RGB pixels, and where the screen's light falls (a face or
a print reflects it; a phone screen glows with its own light). ``Camera`` then adds that light, motion
blur, sensor noise and JPEG, as a webcam and the page's canvas do.

* ``Student``: a real head (``bench.head3d``: the photo lifted to 3-D with the face mesh) that reacts to
  each prompt after a human reaction time, turns smoothly at human speed (minimum-jerk, 35-70 degrees a
  second, 20-30 degrees), holds, sways a little, and reflects the screen.
* ``Print``: a printed photo held in a hand (jitter), reflecting the screen like paper; ``Print.turned``
  warps it in perspective as a print turned about its vertical axis.
* Attackers in bench.attacks combine these: photo swaps, flip-books, recordings replayed on a screen.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from bench.head3d import BACKGROUND, FRAME_SIZE, Head, load_photo, place

TURN_SIGN = {"turn_left": 1.0, "turn_right": -1.0}  # + : the nose towards the image's right (student's left)


@dataclass
class Scene:
    image: np.ndarray  # RGB uint8, 640x480
    reflective: np.ndarray | None  # float mask 0..1: how much of the screen's light each pixel reflects back
    moving: float = 0.0  # degrees a second the head is turning (motion blur)


def _linear(colour) -> np.ndarray:
    return (np.asarray(colour, dtype=np.float64) / 255.0) ** 2.2


# The page's palette (facelogin.pipeline.flash.PALETTE) averaged: the light level the face is used to.
def _mean_screen() -> np.ndarray:
    from facelogin.pipeline.flash import PALETTE

    return np.mean([_linear(c) for c in PALETTE], axis=0)


@dataclass
class Camera:
    """A webcam: the screen's light on reflective surfaces, blur when things move, sensor noise, JPEG."""

    rng: np.random.Generator
    noise: float = 2.5  # sensor noise, grey levels
    quality: int = 80  # the page's canvas.toBlob JPEG quality (0.8)
    reflection: float = 0.1  # screen light relative to the room's on what faces the screen

    def shoot(self, scene: Scene, screen: tuple[int, int, int] | None) -> bytes:
        pixels = scene.image.astype(np.float32)
        if screen is not None and scene.reflective is not None and self.reflection > 0:
            gain = (1.0 + self.reflection * _linear(screen)) / (1.0 + self.reflection * _mean_screen())
            # sRGB ≈ linear ** (1 / 2.2): a change of the light multiplies the stored value by gain ** (1 / 2.2).
            factor = gain ** (1 / 2.2) - 1.0
            pixels *= 1.0 + scene.reflective[:, :, None] * factor[None, None, :]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if scene.moving > 25:  # fast turns smear a 30-60 ms exposure sideways
            image = image.filter(ImageFilter.BoxBlur(min(3.0, scene.moving / 40)))
        noisy = np.asarray(image, dtype=np.float32) + self.rng.normal(0, self.noise, (FRAME_SIZE[1], FRAME_SIZE[0], 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=self.quality)
        return buffer.getvalue()


def prompt_of(message: dict) -> str | None:
    return (message.get("challenge") or {}).get("step")


def screen_of(message: dict) -> tuple[int, int, int] | None:
    colour = (message.get("challenge") or {}).get("flash")
    return tuple(colour) if colour else None


# --- a student ---------------------------------------------------------------------------------------


@dataclass
class Motion:
    """Minimum-jerk movement of one angle from ``start`` to ``end`` between two times."""

    t0: float = 0.0
    t1: float = 0.0
    start: float = 0.0
    end: float = 0.0

    def at(self, t: float) -> float:
        if t <= self.t0 or self.t1 <= self.t0:
            return self.start if t <= self.t0 else self.end
        if t >= self.t1:
            return self.end
        s = (t - self.t0) / (self.t1 - self.t0)
        return self.start + (self.end - self.start) * (10 * s**3 - 15 * s**4 + 6 * s**5)

    def speed(self, t: float, dt: float = 0.02) -> float:
        return abs(self.at(t + dt) - self.at(t - dt)) / (2 * dt)


class Student:
    """A student at the webcam following the page's prompts (the genuine sign-in)."""

    def __init__(self, head: Head, rng: random.Random) -> None:
        self.head = head
        self.rng = rng
        self.amplitude = rng.uniform(20.0, 30.0)  # degrees a turn goes
        self.speed = rng.uniform(35.0, 70.0)  # degrees a second
        self.sway_phase = rng.uniform(0, 2 * math.pi)
        self.motion = Motion()
        self.prompt: str | None = None

    def observe(self, message: dict, t: float) -> None:
        """The page showed the server's message at ``t``: react to a new prompt."""
        prompt = prompt_of(message)
        if prompt == self.prompt or prompt is None:
            return
        self.prompt = prompt
        if prompt in TURN_SIGN:
            target = TURN_SIGN[prompt] * self.amplitude
        elif prompt == "hold":
            return
        else:  # "look": back to the camera
            target = 0.0
        start = t + self.reaction()
        current = self.motion.at(start)
        duration = max(0.25, abs(target - current) / self.speed)
        self.motion = Motion(start, start + duration, current, target)

    def reaction(self) -> float:
        """Seeing the prompt to starting to turn: a choice reaction, 0.3-0.9 s."""
        return min(0.9, max(0.3, self.rng.gauss(0.5, 0.12)))

    def yaw(self, t: float) -> float:
        return self.motion.at(t) + 0.8 * math.sin(2 * math.pi * 0.35 * t + self.sway_phase)

    def scene(self, t: float) -> Scene:
        render = _render(self.head, round(self.yaw(t) * 2) / 2)
        dx = 2.0 * math.sin(2 * math.pi * 0.21 * t + self.sway_phase)
        dy = 1.5 * math.sin(2 * math.pi * 0.17 * t + 1.3 * self.sway_phase)
        image, mask = _shift(render.image, dx, dy), _shift_mask(render.head, dx, dy)
        reflective = mask.astype(np.float32) + 0.25 * (~mask)  # the room is further from the screen
        return Scene(image, reflective, self.motion.speed(t))


@lru_cache(maxsize=128)
def _render_cached(head_id: int, yaw: float):
    return _HEADS[head_id].render(yaw)


_HEADS: dict[int, Head] = {}


def _render(head: Head, yaw: float):
    _HEADS[id(head)] = head
    return _render_cached(id(head), yaw)


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return np.asarray(
        Image.fromarray(image).transform(FRAME_SIZE, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.Resampling.BILINEAR, fillcolor=BACKGROUND)
    )


def _shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return np.roll(np.roll(mask, round(dy), axis=0), round(dx), axis=1)


# --- prints ------------------------------------------------------------------------------------------


@dataclass
class Print:
    """A printed photo held in a hand in front of the camera: a little jitter every frame; paper reflects."""

    photo: Path
    face_height: int
    rng: random.Random
    mirror: bool = False
    offset: tuple[int, int] = (0, 0)

    def scene(self, *, turned: float = 0.0, offset: tuple[int, int] | None = None, mirror: bool | None = None) -> Scene:
        photo = load_photo(self.photo, self.mirror if mirror is None else mirror)
        dx, dy = self.rng.gauss(0, 1.5), self.rng.gauss(0, 1.5)
        ox, oy = offset or self.offset
        canvas = place(photo, self.face_height, offset=(ox + round(dx), oy + round(dy)))
        paper = place(Image.new("RGB", photo.size, (255, 255, 255)), self.face_height, offset=(ox + round(dx), oy + round(dy)), background=(0, 0, 0))
        reflective = (paper[:, :, 0] > 0).astype(np.float32) + 0.25 * (paper[:, :, 0] == 0)
        if turned:
            canvas, reflective = perspective_turn(canvas, turned), perspective_turn(reflective, turned)
        return Scene(canvas, reflective)


def perspective_turn(image: np.ndarray, degrees: float, focal: float = 700.0) -> np.ndarray:
    """``image`` as a flat picture turned by ``degrees`` about the vertical axis through its centre, seen by
    a pinhole camera (focal length in pixels) from the picture's distance: a homography."""
    from facelogin.pipeline.headpose import homography

    height, width = image.shape[:2]
    cx, cy, a = width / 2, height / 2, math.radians(degrees)

    def seen(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        depth = focal + dx * math.sin(a)
        return cx + focal * dx * math.cos(a) / depth, cy + focal * dy / depth

    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=float)
    h = homography(np.array([seen(x, y) for x, y in corners]), corners)  # output pixel -> input pixel
    coefficients = tuple((h / h[2, 2]).ravel()[:8])
    if image.ndim == 2:
        out = Image.fromarray(image.astype(np.float32), mode="F").transform((width, height), Image.Transform.PERSPECTIVE, coefficients, resample=Image.Resampling.BILINEAR, fillcolor=0.25)
        return np.asarray(out, dtype=np.float32)
    out = Image.fromarray(image).transform((width, height), Image.Transform.PERSPECTIVE, coefficients, resample=Image.Resampling.BICUBIC, fillcolor=BACKGROUND)
    return np.asarray(out)


__all__ = ["Camera", "Motion", "Print", "Scene", "Student", "perspective_turn", "prompt_of", "screen_of"]
