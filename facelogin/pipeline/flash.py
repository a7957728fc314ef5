"""Screen-colour liveness: the page lights the face with colours the server picks at random, and the face
in the camera must reflect THIS attempt's colours, frame by frame.

Why: a recording (played on a phone or tablet, or injected as a camera) shows the colours of the attempt it
was recorded in, not this one's; and a screen glows with its own light instead of reflecting the portal's,
so a picture swapped on a tablet does not follow them either. A face or a printed photo reflects the
screen like any matte surface: this check stops screens and recordings, not prints (the head-turn
geometry and the face track do that). After Tang et al., "Face Flashing: a Secure Liveness Detection
Protocol based on Light Reflections" (NDSS 2018).

Protocol: each answer to a frame carries the colour the page shows next (``FlashSchedule.colour_for``);
the page captures its next frame only after showing it, so the colour that lit frame k+1 is the one the
answer to frame k carried. Colours change every 1-2 frames at random, never to the same colour; all are of
one luminance and none is saturated red, so the changes are not flashes in WCAG 2.3.1's sense.

Judgement: the skin's colour is read at mesh points on the forehead, the cheeks and the nose, as log chroma
(log R/G, log B/G), which cancels the exposure and the skin's own colour; the screen colour is put on the
same axes (linear light). At every colour change between two consecutive face frames the skin's chroma
must jump the way the screen's did: over at least ``min_changes`` changes the jumps must correlate
(``min_correlation``) with a response of at least ``min_gain`` (``flash_statistics``). Thresholds measured
with ``python -m bench.attacks`` (see the README).

What was tried and dropped: reading the face's 3-D shape from where the light falls (a curved face reflects
more where it faces the screen, a print the same everywhere). On simulated webcam frames (8-bit, JPEG, the
screen at 4-25 % of the room's light) the pattern was below the noise of ~30 frames for a third of the
genuine attempts, while prints' 8-bit rounding of dark and bright areas imitated it; it needs a real camera
to be judged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Screen colours (sRGB): warm, blue, green, of one relative luminance (0.435-0.443), so that changing
# between them is not a flash in WCAG 2.3.1's sense (a change of luminance), and none is saturated red
# (its red-flash rule): the page may change them a few times a second.
PALETTE: tuple[tuple[int, int, int], ...] = ((255, 150, 70), (120, 180, 255), (80, 200, 110))
NEUTRAL = (200, 200, 200)  # shown before the first answer

# Face-mesh points on skin that stays in view through a moderate turn: forehead, between the brows,
# the nose's bridge and tip, and both cheeks (MediaPipe's canonical numbering).
SKIN_POINTS = (10, 151, 9, 8, 107, 336, 6, 197, 195, 5, 4, 1, 50, 101, 118, 117, 205, 280, 330, 347, 346, 425)


@dataclass(frozen=True)
class FlashConfig:
    frames_per_colour: tuple[int, int] = (1, 2)
    min_frames: int = 10  # face frames with a colour reading
    # Colour changes seen between consecutive face frames: each is one look at the reflection. A recording
    # whose own colours change as often reached 10 changes at a correlation of 0.85 in 2 of 20,000
    # simulated attempts, checked at every frame (8 at 0.75: 36); a sign-in spans 10-20 changes.
    min_changes: int = 10
    min_correlation: float = 0.85
    # Response per unit of screen chroma (log-chroma units). A face half a metre from a laptop screen in
    # an office reflects a few per cent of its light; below this, there is no reflection to speak of.
    min_gain: float = 0.01


def skin_colour(image: np.ndarray, mesh: np.ndarray, radius: int = 2) -> tuple[float, float, float]:
    """Mean RGB over (2r+1)^2 patches at the skin points of the mesh (clipped to the image)."""
    height, width = image.shape[:2]
    points = mesh[list(SKIN_POINTS)]
    x = np.clip(np.rint(points[:, 0]).astype(int), radius, width - radius - 1)
    y = np.clip(np.rint(points[:, 1]).astype(int), radius, height - radius - 1)
    offsets = np.arange(-radius, radius + 1)
    ys = y[:, None, None] + offsets[None, :, None]
    xs = x[:, None, None] + offsets[None, None, :]
    mean = image[ys, xs].reshape(-1, 3).astype(np.float64).mean(axis=0)
    return float(mean[0]), float(mean[1]), float(mean[2])


def chroma(rgb: Sequence[float]) -> np.ndarray:
    r, g, b = (max(float(v), 1.0) for v in rgb)
    return np.array([math.log(r / g), math.log(b / g)])


def linear(rgb: Sequence[int]) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float64) / 255.0) ** 2.2


def screen_axes(rgb: Sequence[int]) -> np.ndarray:
    """The screen colour on the axes its reflection moves the face's log chroma along (linear light)."""
    value = linear(rgb)
    return np.array([value[0] - value[1], value[2] - value[1]])


@dataclass
class _Reading:
    shown: int  # palette index
    skin: tuple[float, float, float]  # the skin's mean RGB


@dataclass
class FlashSchedule:
    """The server's side: which colour each answer asks for, and what the face did under each."""

    config: FlashConfig = field(default_factory=FlashConfig)
    rng: random.Random = field(default_factory=random.SystemRandom)
    sequence: list[int] = field(default_factory=list)  # palette index asked for by answer k
    readings: list[_Reading] = field(default_factory=list)
    _left: int = 0

    def colour_for(self, answer: int) -> tuple[int, int, int]:
        """The colour answer number ``answer`` (0, 1, 2, ...) asks the page to show."""
        while len(self.sequence) <= answer:
            if self._left <= 0 or not self.sequence:
                choices = [i for i in range(len(PALETTE)) if not self.sequence or i != self.sequence[-1]]
                self.sequence.append(self.rng.choice(choices))
                self._left = self.rng.randint(*self.config.frames_per_colour) - 1
            else:
                self.sequence.append(self.sequence[-1])
                self._left -= 1
        return PALETTE[self.sequence[answer]]

    def shown_before(self, frame: int) -> int | None:
        """The palette index on screen when frame number ``frame`` (0-based) was captured: the colour the
        previous answer asked for (None for the first frame, captured before any answer)."""
        return self.sequence[frame - 1] if 0 < frame <= len(self.sequence) else None

    def record(self, frame: int, skin: tuple[float, float, float] | None) -> None:
        shown = self.shown_before(frame)
        if shown is not None and skin is not None:
            self.readings.append(_Reading(shown, skin))

    def verdict(self) -> FlashVerdict:
        return flash_verdict(self.readings, self.config)


@dataclass(frozen=True)
class FlashVerdict:
    status: str  # "passed", "failed" or "pending" (not enough frames yet)
    frames: int
    changes: int
    correlation: float = 0.0
    gain: float = 0.0

    def report(self) -> dict:
        return {
            "status": self.status,
            "frames": self.frames,
            "changes": self.changes,
            "correlation": round(self.correlation, 3),
            "gain": round(self.gain, 4),
        }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    spread = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / spread if spread > 0 else 0.0


def flash_statistics(readings: Sequence[_Reading]) -> tuple[int, float, float]:
    """(colour changes seen, correlation, gain) of the skin's jumps at the colour changes with the screen's.

    Only the frame pairs across a colour change count: there the face's log chroma must jump the way the
    screen's colour did (correlation over the changes, 2-D vectors), by a reflection's amount (the gain, by
    least squares). What moves the face's colour between changes (a head turn, a photo swapped, exposure
    drifting) does not enter, unless it happens to fall on a change, where it is noise.
    """
    face = [chroma(r.skin) for r in readings]
    screen = [screen_axes(PALETTE[r.shown]) for r in readings]
    jumps = [(face[i] - face[i - 1], screen[i] - screen[i - 1]) for i in range(1, len(readings)) if readings[i].shown != readings[i - 1].shown]
    if not jumps:
        return 0, 0.0, 0.0
    seen = np.array([j for j, _ in jumps])
    asked = np.array([s for _, s in jumps])
    energy = float((asked**2).sum())
    return len(jumps), _correlation(seen, asked), (float((seen * asked).sum()) / energy if energy > 0 else 0.0)


def flash_verdict(readings: Sequence[_Reading], config: FlashConfig) -> FlashVerdict:
    changes, correlation, gain = flash_statistics(readings)
    if len(readings) < config.min_frames or changes < config.min_changes:
        return FlashVerdict("pending", len(readings), changes, correlation, gain)
    passed = correlation >= config.min_correlation and gain >= config.min_gain
    return FlashVerdict("passed" if passed else "failed", len(readings), changes, correlation, gain)


__all__ = [
    "NEUTRAL",
    "PALETTE",
    "SKIN_POINTS",
    "FlashConfig",
    "FlashSchedule",
    "FlashVerdict",
    "chroma",
    "flash_verdict",
    "skin_colour",
    "screen_axes",
    "flash_statistics",
]
