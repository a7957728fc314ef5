"""Screen-colour liveness: the page lights the face with colours the server picks at random, and the face
in the camera must reflect them, frame by frame.

Why: a recording (played on a phone or tablet, or injected as a camera) cannot know which colours this
attempt will ask for, and a screen glows with its own light instead of reflecting the portal's. A face or
a printed photo reflects the screen like any matte surface, so this check stops replays, not prints
(the head-turn geometry does that). After Tang et al., "Face Flashing: a Secure Liveness Detection
Protocol based on Light Reflections" (NDSS 2018).

Protocol: each answer to a frame carries the colour the page shows next (``FlashSchedule.colour_for``);
the page captures its next frame only after showing it, so the colour that lit frame k+1 is the one the
answer to frame k carried. Colours change every 2-3 frames at random (at the page's ~10 frames a second
that is at most ~3 changes a second, WCAG 2.3.1's limit for flashes), never to the same colour, and none
is saturated red (WCAG's red-flash rule).

Judgement: the face's colour is read from skin points of the face mesh (forehead, cheeks, nose) as log
chroma (log R/G, log B/G), which cancels exposure and the skin's own colour once the attempt's mean is
taken away; the screen's colour is turned into the same two axes. The face passes when, over at least
``min_frames`` frames and ``min_changes`` colour changes, the two series correlate (``min_correlation``)
and the face's response has the strength a reflection has (``min_gain``). Thresholds measured with
``python -m bench.attacks`` (see the README).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Screen colours (sRGB): warm, blue, green. Roughly equal lightness, so the page does not blink; no red.
PALETTE: tuple[tuple[int, int, int], ...] = ((255, 170, 60), (70, 140, 255), (90, 220, 120))
NEUTRAL = (200, 200, 200)  # shown before the first answer

# Face-mesh points on skin that stays in view through a moderate turn: forehead, between the brows,
# the nose's bridge and tip, and both cheeks (MediaPipe's canonical numbering).
SKIN_POINTS = (10, 151, 9, 8, 107, 336, 6, 197, 195, 5, 4, 1, 50, 101, 118, 117, 205, 280, 330, 347, 346, 425)


@dataclass(frozen=True)
class FlashConfig:
    frames_per_colour: tuple[int, int] = (2, 3)
    min_frames: int = 10  # face frames with a colour reading
    min_changes: int = 3  # colour changes those frames span
    min_correlation: float = 0.5
    # Response per unit of screen chroma (log-chroma units). A face half a metre from a laptop screen in
    # an office reflects a few per cent of its light; below this, there is no reflection to speak of.
    min_gain: float = 0.01


def skin_colour(image: np.ndarray, mesh: np.ndarray, patch: int = 1) -> tuple[float, float, float] | None:
    """Mean RGB over small patches at the mesh's skin points (None when they fall outside the image)."""
    height, width = image.shape[:2]
    samples = []
    for index in SKIN_POINTS:
        x, y = int(round(float(mesh[index, 0]))), int(round(float(mesh[index, 1])))
        if patch <= x < width - patch and patch <= y < height - patch:
            samples.append(image[y - patch : y + patch + 1, x - patch : x + patch + 1].reshape(-1, 3))
    if len(samples) < len(SKIN_POINTS) // 2:
        return None
    mean = np.concatenate(samples).astype(np.float64).mean(axis=0)
    return float(mean[0]), float(mean[1]), float(mean[2])


def chroma(rgb: Sequence[float]) -> np.ndarray:
    r, g, b = (max(float(v), 1.0) for v in rgb)
    return np.array([math.log(r / g), math.log(b / g)])


def screen_axes(rgb: Sequence[int]) -> np.ndarray:
    """The screen colour on the axes its reflection moves the face's log chroma along (linear light)."""
    linear = [(v / 255.0) ** 2.2 for v in rgb]
    return np.array([linear[0] - linear[1], linear[2] - linear[1]])


@dataclass
class FlashSchedule:
    """The server's side: which colour each answer asks for, and what the face did under each."""

    config: FlashConfig = field(default_factory=FlashConfig)
    rng: random.Random = field(default_factory=random.SystemRandom)
    sequence: list[int] = field(default_factory=list)  # palette index asked for by answer k
    readings: list[tuple[int, tuple[float, float, float]]] = field(default_factory=list)  # (shown, skin RGB)
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
            self.readings.append((shown, skin))

    def verdict(self) -> FlashVerdict:
        return flash_verdict(self.readings, self.config)


@dataclass(frozen=True)
class FlashVerdict:
    status: str  # "passed", "failed" or "pending" (not enough frames yet)
    frames: int
    changes: int
    correlation: float
    gain: float

    def report(self) -> dict:
        return {
            "status": self.status,
            "frames": self.frames,
            "changes": self.changes,
            "correlation": round(self.correlation, 3),
            "gain": round(self.gain, 4),
        }


def flash_verdict(readings: Sequence[tuple[int, tuple[float, float, float]]], config: FlashConfig) -> FlashVerdict:
    shown = [index for index, _ in readings]
    changes = sum(1 for a, b in zip(shown, shown[1:]) if a != b)
    if len(readings) < config.min_frames or changes < config.min_changes or len(set(shown)) < 2:
        return FlashVerdict("pending", len(readings), changes, 0.0, 0.0)
    face = np.array([chroma(rgb) for _, rgb in readings])
    screen = np.array([screen_axes(PALETTE[index]) for index in shown])
    face -= face.mean(axis=0)
    screen -= screen.mean(axis=0)
    energy = float((screen**2).sum())
    covariance = float((face * screen).sum())
    spread = math.sqrt(float((face**2).sum()) * energy)
    correlation = covariance / spread if spread > 0 else 0.0
    gain = covariance / energy if energy > 0 else 0.0
    passed = correlation >= config.min_correlation and gain >= config.min_gain
    return FlashVerdict("passed" if passed else "failed", len(readings), changes, correlation, gain)


__all__ = ["NEUTRAL", "PALETTE", "SKIN_POINTS", "FlashConfig", "FlashSchedule", "FlashVerdict", "chroma", "flash_verdict", "screen_axes", "skin_colour"]
