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

# A colour change over which the head turned more than this (headpose.mesh_yaw degrees, about twice as
# many real ones) is not judged: a fast turn blurs the skin and mixes in hair and background. (Chroma
# barely moves with a slower turn: turning to or from the room's light changes the skin's brightness, a
# ratio of the colours cancels it.)
MAX_YAW_CHANGE = 6.0

# Face-mesh points on skin, away from eyes, brows, nostrils, lips and the face's outline: the forehead, the
# nose's bridge, both cheeks. Derived once from four real faces (johns, ORL, Yale) as the points inside
# all of: forehead 0.35-0.85 eye distances above the eyes' line, cheeks 0.3 below it to just above the
# mouth and 0.28-0.7 aside, the bridge within 0.1 of the middle (MediaPipe's canonical numbering).
SKIN_POINTS = (
    3, 5, 36, 48, 49, 64, 69, 92, 101, 102, 108, 122, 129, 142, 151, 165, 186, 195, 196, 197, 203, 205,
    206, 216, 248, 266, 278, 279, 294, 299, 322, 330, 331, 337, 351, 358, 371, 391, 410, 419, 423, 425,
    426, 436,
)


@dataclass(frozen=True)
class FlashConfig:
    # One or two frames a colour. A new colour with every answer (1, 1) gives more changes a second and cut
    # the median recognised -> passed from 3.46 to 2.76 s, but a glossy tablet's glass reflects the page's
    # screen too, weakly: with that many changes the test found its reflection significant (bench.attacks,
    # 5 seeds: a live 3-D puppet on a tablet passed 14 of 65, a pair of photos on a tablet 2), so it was
    # not kept.
    frames_per_colour: tuple[int, int] = (1, 2)
    min_frames: int = 10  # face frames with a colour reading
    # Colour changes judged (the head still over them): each is one look at the reflection.
    min_changes: int = 10
    # The correlation they must reach (needed_correlation): chance_z spreads of a chance correlation, and
    # at least min_correlation. With z 4.8, 12 changes need 0.98, 16 need 0.85, 24 need 0.69: a weak
    # reflection (a bright room) is accepted after more colours. A recording whose own colours change as
    # often never passed in 20,000 simulated attempts checked at every frame up to 45 (z 4.4: 6 did;
    # bench.attacks reports the real attacks).
    chance_z: float = 4.8
    min_correlation: float = 0.6
    # Response per unit of screen chroma (log-chroma units). A face half a metre from a laptop screen in
    # an office reflects a few per cent of its light; below this, there is no reflection to speak of.
    min_gain: float = 0.01


def skin_colour(image: np.ndarray, mesh: np.ndarray, radius: int = 3) -> tuple[float, float, float]:
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
    yaw: float = 0.0  # the head's yaw (headpose.mesh_yaw): a change of pose changes the skin's colour too


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

    def record(self, frame: int, skin: tuple[float, float, float] | None, yaw: float = 0.0) -> None:
        shown = self.shown_before(frame)
        if shown is not None and skin is not None:
            self.readings.append(_Reading(shown, skin, yaw))

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
    """(colour changes judged, correlation, gain) of the skin's jumps at the colour changes with the screen's.

    The frames are cut into runs of one colour; at every change from one run to the next, the skin's mean
    log chroma must jump the way the screen's colour did (correlation over the changes, 2-D vectors), by a
    reflection's amount (the gain, by least squares). Only changes over which the head held still count
    (a turn moves the skin's colour by itself, as the skin turns to and from the room's light); what moves
    the face's colour within a run (exposure drifting, a photo swapped) does not enter. A jump that falls
    on a change (a blink of auto white balance, a hand in the light) would, so the changes that fit worst,
    at most one in ten and only clear outliers, are left out.
    """
    runs: list[list[_Reading]] = []
    for reading in readings:
        if runs and runs[-1][0].shown == reading.shown:
            runs[-1].append(reading)
        else:
            runs.append([reading])
    pairs = []
    for before, after in zip(runs, runs[1:]):
        yaws = [r.yaw for r in before + after]
        if max(yaws) - min(yaws) > MAX_YAW_CHANGE:
            continue
        jump = np.mean([chroma(r.skin) for r in after], axis=0) - np.mean([chroma(r.skin) for r in before], axis=0)
        pairs.append((jump, screen_axes(PALETTE[after[0].shown]) - screen_axes(PALETTE[before[0].shown])))
    if not pairs:
        return 0, 0.0, 0.0
    seen = np.array([jump for jump, _ in pairs])
    asked = np.array([change for _, change in pairs])
    gain = _gain(seen, asked)
    misfit = np.linalg.norm(seen - gain * asked, axis=1)
    outliers = np.argsort(misfit)[::-1][: len(pairs) // 10]
    outliers = outliers[misfit[outliers] > 3 * np.median(misfit)]
    keep = np.setdiff1d(np.arange(len(pairs)), outliers)
    return len(keep), _correlation(seen[keep], asked[keep]), _gain(seen[keep], asked[keep])


def needed_correlation(changes: int, config: FlashConfig) -> float:
    """The correlation ``changes`` colour changes must reach: a face that does not follow the colours
    correlates with them by chance as a normal variable of spread 1/sqrt(2n) (two axes a change), so the
    bar is ``z`` such spreads, never under the floor."""
    return max(config.min_correlation, config.chance_z / math.sqrt(2 * max(changes, 1)))


def _gain(seen: np.ndarray, asked: np.ndarray) -> float:
    energy = float((asked**2).sum())
    return float((seen * asked).sum()) / energy if energy > 0 else 0.0


def flash_verdict(readings: Sequence[_Reading], config: FlashConfig) -> FlashVerdict:
    changes, correlation, gain = flash_statistics(readings)
    if len(readings) < config.min_frames or changes < config.min_changes:
        return FlashVerdict("pending", len(readings), changes, correlation, gain)
    passed = correlation >= needed_correlation(changes, config) and gain >= config.min_gain
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
    "needed_correlation",
    "skin_colour",
    "screen_axes",
    "flash_statistics",
]
