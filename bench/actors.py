"""Who stands in front of the sign-in camera in bench.attacks: a student, or an attacker with what is easy to
get (the student's photos, a recording of them), each answering the server's prompts as well as they can.

Every actor is asked for one frame at a time, with the time since the attempt began and the server's last
message (``hello`` or a frame's answer, with its ``challenge``: the prompt and the colour the page shows).
It returns the scene as the camera would see it: RGB pixels, and where the screen's light falls (a face or
a print reflects it; a phone screen glows with its own light). ``Camera`` then adds that light, motion
blur, sensor noise and JPEG, as a webcam and the page's canvas do.

* ``Student``: a real head (``bench.head3d``: the photo lifted to 3-D with the face mesh) that reacts to
  each prompt after a human reaction time, turns smoothly at human speed (minimum-jerk, 30-90 degrees a
  second on average, 20-30 degrees), holds, sways a little, and reflects the screen.
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

from bench.head3d import BACKGROUND, FRAME_SIZE, ROOM_REFLECTION, SCREEN_LIGHT, Head, load_photo, place

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
        image = Image.fromarray(scene.image)
        if scene.moving > 25:  # fast turns smear a 30-60 ms exposure sideways
            image = image.filter(ImageFilter.BoxBlur(min(3.0, scene.moving / 40)))
        pixels = np.asarray(image, dtype=np.float32)
        if screen is not None and scene.reflective is not None and self.reflection > 0:
            gain = (1.0 + self.reflection * _linear(screen)) / (1.0 + self.reflection * _mean_screen())
            # sRGB ≈ linear ** (1 / 2.2): a change of the light multiplies the stored value by gain ** (1 / 2.2).
            factor = gain ** (1 / 2.2) - 1.0
            pixels = pixels * (1.0 + scene.reflective[:, :, None] * factor[None, None, :])
        # A sensor's noise comes before its converter quantises, so a change of light far below one grey level
        # still moves the mean of many pixels by its own amount. Quantising first (as this camera once did,
        # truncating) turned a tablet glass's 0.2 % reflection into a whole grey level: ten times its gain.
        noisy = pixels + self.rng.normal(0, self.noise, (FRAME_SIZE[1], FRAME_SIZE[0], 3))
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
        # Degrees a second on average over the turn: voluntary head turns of 20-30 degrees take 0.3-0.8 s
        # (peaks 2x the average); the page asks for a turn, not a slow one. The slow half of the range is
        # kept: a hesitant student is the one who gets refused.
        self.speed = rng.uniform(30.0, 90.0)
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
        render = _render(self.head, float(round(self.yaw(t))))
        dx = 2.0 * math.sin(2 * math.pi * 0.21 * t + self.sway_phase)
        dy = 1.5 * math.sin(2 * math.pi * 0.17 * t + 1.3 * self.sway_phase)
        return Scene(_shift(render.image, dx, dy), _shift_mask(render.screen, dx, dy), self.motion.speed(t))


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
    return np.roll(np.roll(mask, round(dy), axis=0), round(dx), axis=1)  # whole pixels: light varies slowly


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
        # Flat paper faces the screen the same way all over: as much as a face's most frontal point,
        # less when the print is turned.
        facing = float(np.clip(np.cos(np.radians(turned)) * SCREEN_LIGHT[2] * -1, 0, 1))
        reflective = np.where(paper[:, :, 0] > 0, facing, ROOM_REFLECTION).astype(np.float32)
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


# --- every actor ---------------------------------------------------------------------------------------


class Actor:
    """Something in front of the camera: ``observe`` each server message as the page shows it, ``frame``
    when the page captures. Subclasses give the scene (``scene``) or the bytes (``frame``)."""

    prompt: str | None = None  # the last prompt acted on (``_new_turn_prompt``)

    def __init__(self, camera: Camera) -> None:
        self.camera = camera

    def observe(self, message: dict, t: float) -> None:
        pass

    def _new_turn_prompt(self, message: dict) -> str | None:
        """The message's prompt if it asks for something new (a turn, or back to the camera), remembered in
        ``self.prompt``; None for the same prompt again, none at all, or "hold"."""
        prompt = prompt_of(message)
        if prompt == self.prompt or prompt in (None, "hold"):
            return None
        self.prompt = prompt
        return prompt

    def scene(self, t: float) -> Scene | None:
        raise NotImplementedError

    def frame(self, t: float, screen: tuple[int, int, int] | None) -> bytes | None:
        scene = self.scene(t)
        return None if scene is None else self.camera.shoot(scene, screen)


class StudentActor(Actor):
    """The genuine student (``Student``) seen through a webcam."""

    def __init__(self, student: Student, camera: Camera) -> None:
        super().__init__(camera)
        self.student = student

    def observe(self, message: dict, t: float) -> None:
        self.student.observe(message, t)

    def scene(self, t: float) -> Scene:
        return self.student.scene(t)


class StillActor(Actor):
    """(a) A printed photo held still in front of the camera (a hand's jitter, paper reflects)."""

    def __init__(self, paper: Print, camera: Camera) -> None:
        super().__init__(camera)
        self.paper = paper

    def scene(self, t: float) -> Scene:
        return self.paper.scene()


class ReplayActor(Actor):
    """(b) The same frame's bytes sent again and again."""

    def __init__(self, data: bytes) -> None:
        super().__init__(Camera(np.random.default_rng(0)))
        self.data = data

    def frame(self, t: float, screen) -> bytes:
        return self.data


GLASS = 0.015  # a phone's or tablet's glass returns a little of the screen's light; its picture glows by itself


class ScreenReplayActor(Actor):
    """(c) A video of the student played on a phone held to the camera: the recorded frames at their own
    pace (blind to this attempt's prompts), with the colours of the attempt they were recorded in; the
    portal's colours fall on the phone's glass only."""

    def __init__(self, recording: list[tuple[float, np.ndarray]], camera: Camera) -> None:
        super().__init__(camera)
        self.recording = recording

    def scene(self, t: float) -> Scene | None:
        if t > self.recording[-1][0] + 0.5:
            return None  # the video ended
        image = next((img for when, img in reversed(self.recording) if when <= t), self.recording[0][1])
        return Scene(image, np.full(image.shape[:2], GLASS, dtype=np.float32))


# --- attackers who follow the prompts with pictures ------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """One picture the attacker can show: a photo, mirrored or not, tilted as a flat print (degrees)."""

    photo: Path
    mirror: bool = False
    tilt: float = 0.0


class PromptFollower(Actor):
    """An attacker answering the page's prompts with a sequence of pictures per direction: each prompt is
    followed after a human reaction time, stepping through the pictures towards the side asked for (or back
    through the front picture to the other side). On ``medium="print"`` every change of printed photo is
    a physical swap: the new print slides in over the old for ``swap_s``; on ``"tablet"`` the pictures
    change instantly but glow instead of reflecting the portal's light."""

    def __init__(self, paths: dict[str, list[Pose]], *, face_height: int, medium: str, rng: random.Random, camera: Camera,
                 step_s: float = 0.15, swap_s: float = 0.25) -> None:
        super().__init__(camera)
        self.paths, self.face_height, self.medium, self.rng = paths, face_height, medium, rng
        self.step_s, self.swap_s = step_s, swap_s
        self.side = "front"
        self.timeline: list[tuple[float, Pose]] = [(0.0, paths["front"][0])]

    def observe(self, message: dict, t: float) -> None:
        prompt = self._new_turn_prompt(message)
        if prompt is None:
            return
        side = {"turn_left": "left", "turn_right": "right"}.get(prompt, "front")
        if side == self.side:
            return
        # Back through the front picture when crossing to the other side.
        route = list(reversed(self.paths[self.side][1:-1])) if self.side != "front" else []
        route += [self.paths["front"][0]] if side == "front" or self.side != "front" else []
        route += self.paths[side][1:] if side != "front" else []
        start = t + self.rng.uniform(0.45, 0.7)  # reading the prompt, reaching for the next picture
        for index, pose in enumerate(route):
            self.timeline.append((start + index * self.step_s, pose))
        self.side = side

    def _pose_at(self, t: float) -> tuple[Pose, Pose | None, float]:
        """(the picture shown, the one it replaces while a print is being swapped, how far the swap is)."""
        current, before, since = self.timeline[0][1], None, 0.0
        for when, pose in self.timeline:
            if when > t:
                break
            before, current, since = current, pose, when
        swapping = self.medium == "print" and before is not None and before.photo != current.photo or (
            self.medium == "print" and before is not None and before.mirror != current.mirror
        )
        fraction = (t - since) / self.swap_s
        return current, (before if swapping and fraction < 1 else None), min(1.0, fraction)

    def _print(self, pose: Pose) -> Scene:
        paper = Print(pose.photo, self.face_height, self.rng, mirror=pose.mirror)
        scene = paper.scene(turned=pose.tilt)
        if self.medium == "tablet":
            scene.reflective = np.where(scene.reflective > ROOM_REFLECTION, GLASS, ROOM_REFLECTION).astype(np.float32)
        return scene

    def scene(self, t: float) -> Scene:
        pose, replaced, fraction = self._pose_at(t)
        new = self._print(pose)
        if replaced is None:
            return new
        return slide_over(self._print(replaced), new, fraction)


def slide_over(old: Scene, new: Scene, fraction: float) -> Scene:
    """A print being swapped: the new one slides in from the right over the old (``fraction`` of the way)."""
    width = FRAME_SIZE[0]
    shift = round((1.0 - fraction) * width * 0.8)
    paper = np.any(np.asarray(new.image, dtype=np.int16) != np.asarray(BACKGROUND, dtype=np.int16), axis=2)
    image, reflective = old.image.copy(), old.reflective.copy()
    if shift < width:
        region = np.zeros_like(paper)
        region[:, shift:] = paper[:, : width - shift]
        image[region] = new.image[:, : width - shift][paper[:, : width - shift]]
        reflective[region] = new.reflective[:, : width - shift][paper[:, : width - shift]]
    return Scene(image, reflective)


class WarpedPrintActor(Actor):
    """(h) One photo printed and turned about its vertical axis as the prompts ask, smoothly and at human
    speed, up to ``max_tilt`` degrees: a flat picture doing its best impression of a head turn."""

    def __init__(self, paper: Print, camera: Camera, rng: random.Random, max_tilt: float = 50.0) -> None:
        super().__init__(camera)
        self.paper, self.rng, self.max_tilt = paper, rng, max_tilt
        self.motion = Motion()

    def observe(self, message: dict, t: float) -> None:
        prompt = self._new_turn_prompt(message)
        if prompt is None:
            return
        # A print turned one way foreshortens like a face turned towards that side (its near edge grows).
        target = {"turn_left": self.max_tilt, "turn_right": -self.max_tilt}.get(prompt, 0.0)
        start = t + self.rng.uniform(0.35, 0.6)
        current = self.motion.at(start)
        self.motion = Motion(start, start + abs(target - current) / 90.0 + 0.1, current, target)

    def scene(self, t: float) -> Scene:
        return self.paper.scene(turned=self.motion.at(t))


class OtherHeadActor(Actor):
    """(i) The student's printed photo held over the attacker's own face for the first frames (identity),
    then lowered when the first turn is asked for, and the attacker's real head does the movements."""

    def __init__(self, paper: Print, attacker: Student, camera: Camera, rng: random.Random, swap_s: float = 0.25) -> None:
        super().__init__(camera)
        self.paper, self.attacker, self.rng, self.swap_s = paper, attacker, rng, swap_s
        self.lowered_at: float | None = None

    def observe(self, message: dict, t: float) -> None:
        self.attacker.observe(message, t)
        if self.lowered_at is None and prompt_of(message) in TURN_SIGN:
            self.lowered_at = t + self.rng.uniform(0.3, 0.5)

    def scene(self, t: float) -> Scene:
        head = self.attacker.scene(t)
        photo = self.paper.scene()
        if self.lowered_at is None or t < self.lowered_at:
            return photo
        fraction = (t - self.lowered_at) / self.swap_s
        return head if fraction >= 1 else slide_over(photo, head, fraction)


class PuppetActor(Actor):
    """A live 3-D puppet of the student on a tablet held to the camera: the student's head (``bench.head3d``)
    driven to follow the prompts as the student would (what a real-time face animation does), shown on a
    screen. With ``forge_lag`` the attacker also re-tints the picture with the colours the portal shows, as
    seen by a camera watching the kiosk's screen, ``forge_lag`` seconds late; without, the tablet glows."""

    def __init__(self, student: Student, camera: Camera, *, forge_lag: float | None = None) -> None:
        super().__init__(camera)
        self.student, self.forge_lag = student, forge_lag
        self.colours: list[tuple[float, tuple[int, int, int] | None]] = [(0.0, None)]

    def observe(self, message: dict, t: float) -> None:
        self.student.observe(message, t)
        colour = (message.get("challenge") or {}).get("flash")
        if colour and tuple(colour) != self.colours[-1][1]:
            self.colours.append((t, tuple(colour)))

    def frame(self, t: float, screen: tuple[int, int, int] | None) -> bytes:
        scene = self.student.scene(t)
        if self.forge_lag is None:
            return self.camera.shoot(Scene(scene.image, np.full(scene.image.shape[:2], GLASS, dtype=np.float32), scene.moving), screen)
        seen = next((colour for when, colour in reversed(self.colours) if when <= t - self.forge_lag), None)
        return self.camera.shoot(scene, seen)
