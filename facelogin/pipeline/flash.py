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
answer to frame k carried. Every answer's colour is drawn afresh, uniformly and independently (it may
repeat); all are of one luminance and none is saturated red, so the changes are not flashes in WCAG
2.3.1's sense.

Judgement: the skin's colour is read at mesh points on the forehead, the cheeks and the nose, as log chroma
(log R/G, log B/G), which cancels the exposure and the skin's own colour; the screen colour is put on the
same axes (linear light). Each frame's skin chroma, less the mean of its neighbours (which removes slow
drift: exposure, the head turning to the room's light), must follow the screen colour of that frame
(``flash_statistics``): a score ``z`` of at least ``chance_z``, a correlation of at least
``min_correlation`` and a response of at least ``min_gain``.

Why ``z`` is exact: the colours are independent draws, so whatever the camera saw (a recording with its
own colours, a glow, noise), the score it would get against this attempt's colours by chance has mean 0
and a variance computed from the frames themselves (``sum a' C a``, C the palette's covariance). A test
of colour *jumps* against jumps, used before, had no such guarantee: successive jumps of one colour
sequence are correlated, and a phone replaying a sign-in recorded at the same frame rate scored 1.3 to
1.7 times its nominal spread and passed (bench.attacks; tests/pipeline/test_liveness.py replays one).

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

# A neighbouring frame whose head pose differs from a frame's by more than this (headpose.mesh_yaw degrees,
# about twice as many real ones) is not used to judge it: a fast turn blurs the skin and mixes in hair and
# background. (Chroma
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
    min_frames: int = 10  # frames judged (a face, the head still around them) before any verdict
    # Standard deviations above chance: a face not lit by the page reaches it by chance with probability
    # 3.4e-6 at one look (looked at again with every frame, up to flash_max_frames). A face reflecting the
    # page well gains about 1.3 z^2 a frame, so it passes after ~15 frames; a weak reflection (a bright
    # room) after more. (4.8 needed ~20 frames: the sign-in's median time rose past 3 s.)
    chance_z: float = 4.5
    min_correlation: float = 0.6  # ... and the frames' fit to the colours (a face: ~0.99)
    # Response per unit of screen chroma (log-chroma units). A face half a metre from a laptop screen in
    # an office reflects a few per cent of its light; a phone's or tablet's glass a few per cent of what a
    # face does. Simulated webcam frames (bench.actors, 10 faces, 40 frames): faces with the screen at 4 % of
    # the room's light 0.0101-0.0130; glass with it at 25 % 0.0008-0.0036, and with many colour changes its
    # weak reflection IS significant (correlation up to 0.64), so the floor is what tells it from skin: set
    # near the geometric middle.
    min_gain: float = 0.006


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
    shown: int  # palette index of the colour on screen when the frame was captured
    skin: tuple[float, float, float]  # the skin's mean RGB
    yaw: float = 0.0  # the head's yaw (headpose.mesh_yaw): a change of pose changes the skin's colour too
    log_chroma: np.ndarray = field(init=False, repr=False)  # chroma(skin), once: every frame's verdict reads it

    def __post_init__(self) -> None:
        self.log_chroma = chroma(self.skin)


@dataclass
class FlashSchedule:
    """The server's side: which colour each answer asks for, and what the face did under each."""

    config: FlashConfig = field(default_factory=FlashConfig)
    rng: random.Random = field(default_factory=random.SystemRandom)
    sequence: list[int] = field(default_factory=list)  # palette index asked for by answer k
    readings: list[_Reading] = field(default_factory=list)

    def colour_for(self, answer: int) -> tuple[int, int, int]:
        """The colour answer number ``answer`` (0, 1, 2, ...) asks the page to show: an independent,
        uniform draw (what makes ``flash_statistics``' chance score exact)."""
        while len(self.sequence) <= answer:
            self.sequence.append(self.rng.randrange(len(PALETTE)))
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
    frames: int  # colour readings
    judged: int  # ... of them judged (the head still around them, no outlier)
    z: float = 0.0
    correlation: float = 0.0
    gain: float = 0.0

    def report(self) -> dict:
        return {
            "status": self.status,
            "frames": self.frames,
            "judged": self.judged,
            "z": round(self.z, 2),
            "correlation": round(self.correlation, 3),
            "gain": round(self.gain, 4),
        }


# The screen colours on the chroma axes, their mean and covariance under uniform draws.
_AXES = np.array([screen_axes(c) for c in PALETTE])
_AXES_MEAN = _AXES.mean(axis=0)
_AXES_COV = (_AXES - _AXES_MEAN).T @ (_AXES - _AXES_MEAN) / len(PALETTE)
NEIGHBOURS = 2  # frames each side whose mean is taken off a frame's colour (drift removal)


@dataclass(frozen=True)
class FlashStatistics:
    judged: int
    z: float
    correlation: float
    gain: float


def flash_statistics(readings: Sequence[_Reading]) -> FlashStatistics:
    """How well the skin's colour follows the screen's, frame by frame.

    For each reading k, ``a_k`` = its log chroma less the mean of up to ``NEIGHBOURS`` readings each side
    taken with the head still (within ``MAX_YAW_CHANGE`` of it): drift and slow pose changes cancel. Then

        z = sum_k a_k . (s_k - m) / sqrt(sum_k a_k' C a_k)

    with ``s_k`` the screen colour at reading k, ``m`` and ``C`` the palette's mean and covariance. Given
    the skin readings, a colour sequence independent of them (which is what the schedule draws) makes the
    numerator a sum of independent terms of mean 0 and exactly that variance: z is a chance score of mean
    0 and spread 1 for anything not lit by this attempt's screen, however its own colours moved. What is
    left out depends on the readings only (a frame whose neighbours moved, or whose ``a_k`` is more than
    four times the median: a photo swapped, the camera's white balance blinking), so it cannot bias z.
    ``gain`` is the response per unit of screen chroma (least squares against the screen colours treated
    the same way), ``correlation`` that fit's quality.
    """
    n = len(readings)
    if n < 3:
        return FlashStatistics(0, 0.0, 0.0, 0.0)
    seen = np.array([r.log_chroma for r in readings])
    shown = _AXES[[r.shown for r in readings]]
    yaws = np.array([r.yaw for r in readings])
    # The neighbours' sums, one offset at a time in the window's order (the same sums, bit for bit, as a
    # mean over each window): a vector pass per offset, not a Python loop per reading, run on every frame.
    seen_sum, shown_sum = np.zeros((n, 2)), np.zeros((n, 2))
    count = np.zeros(n, dtype=np.int64)
    index = np.arange(n)
    for offset in (*range(-NEIGHBOURS, 0), *range(1, NEIGHBOURS + 1)):
        other = np.clip(index + offset, 0, n - 1)
        near = (index + offset >= 0) & (index + offset < n) & (np.abs(yaws[other] - yaws) <= MAX_YAW_CHANGE)
        seen_sum[near] += seen[other[near]]
        shown_sum[near] += shown[other[near]]
        count += near
    judged = count >= 2
    if not judged.any():
        return FlashStatistics(0, 0.0, 0.0, 0.0)
    weight = count[judged, None].astype(np.float64)
    a = seen[judged] - seen_sum[judged] / weight
    s = shown[judged] - _AXES_MEAN
    f = shown[judged] - shown_sum[judged] / weight
    size = np.linalg.norm(a, axis=1)
    keep = size <= 4 * np.median(size) + 1e-12
    a, s, f = a[keep], s[keep], f[keep]
    variance = float(np.einsum("ki,ij,kj->", a, _AXES_COV, a))
    z = float((a * s).sum()) / math.sqrt(variance) if variance > 0 else 0.0
    fit, energy, spread = float((a * f).sum()), float((f * f).sum()), float((a * a).sum())
    correlation = fit / math.sqrt(energy * spread) if energy > 0 and spread > 0 else 0.0
    return FlashStatistics(len(a), z, correlation, fit / energy if energy > 0 else 0.0)


def flash_verdict(readings: Sequence[_Reading], config: FlashConfig) -> FlashVerdict:
    stats = flash_statistics(readings)
    if stats.judged < config.min_frames:
        status = "pending"
    elif stats.z >= config.chance_z and stats.correlation >= config.min_correlation and stats.gain >= config.min_gain:
        status = "passed"
    else:
        status = "failed"
    return FlashVerdict(status, len(readings), stats.judged, stats.z, stats.correlation, stats.gain)


__all__ = [
    "NEUTRAL",
    "PALETTE",
    "SKIN_POINTS",
    "FlashConfig",
    "FlashSchedule",
    "FlashStatistics",
    "FlashVerdict",
    "chroma",
    "flash_verdict",
    "skin_colour",
    "screen_axes",
    "flash_statistics",
]
