"""Presentation-attack detection (PAD) as a plug-in: a score per frame and a threshold.

No anti-spoofing model of real quality ships in any package this project can install (the ones found
download their weights at run time, or failed on a dog photo: shared/notes/offline-models.md), so the
portal's own defences are the active checks in ``liveness`` and ``flash``. A university that licenses a
certified passive PAD model (ISO/IEC 30107-3 tested) plugs it in here: any object with a ``score`` method
taking the analysed frame (RGB uint8) and the face, returning a number that grows with the likelihood of an
attack. ``FACELOGIN_PAD_DETECTOR=package.module:factory`` names a callable that returns one;
``FACELOGIN_PAD_THRESHOLD`` is the operating point the vendor gives for it. The attempt fails when the
mean score over the face track's frames reaches the threshold (``pad_verdict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .types import Face


@runtime_checkable
class PresentationAttackDetector(Protocol):
    def score(self, image: np.ndarray, face: Face) -> float: ...


@dataclass(frozen=True)
class PadVerdict:
    attack: bool
    frames: int
    mean_score: float | None


def pad_verdict(scores: Sequence[float], threshold: float, *, min_frames: int = 3) -> PadVerdict:
    """An attack when the mean score of at least ``min_frames`` frames reaches ``threshold``; fewer frames
    decide nothing yet (``attack`` False, the caller keeps collecting)."""
    usable = [float(s) for s in scores if s is not None]
    if len(usable) < min_frames:
        return PadVerdict(False, len(usable), None)
    mean = sum(usable) / len(usable)
    return PadVerdict(mean >= threshold, len(usable), mean)


__all__ = ["PadVerdict", "PresentationAttackDetector", "pad_verdict"]
