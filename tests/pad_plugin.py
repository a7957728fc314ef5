"""A presentation-attack detector plug-in for the tests (FACELOGIN_PAD_DETECTOR="tests.pad_plugin:factory").

Not a model: it scores a frame by how saturated the face's box is (a stand-in that tests can steer), to
show that whatever a university plugs in is run on every login frame and decides."""

from __future__ import annotations

import numpy as np


class SaturationDetector:
    def __init__(self, attack: bool = True) -> None:
        self.attack = attack
        self.frames = 0

    def score(self, image: np.ndarray, face) -> float:
        self.frames += 1
        x1, y1, x2, y2 = (int(v) for v in face.box)
        box = image[max(y1, 0) : y2, max(x1, 0) : x2].astype(np.float32)
        spread = float((box.max(axis=2) - box.min(axis=2)).mean()) / 255.0 if box.size else 0.0
        return 0.9 if self.attack else spread * 0.0


def factory() -> SaturationDetector:
    return SaturationDetector()


def not_a_detector() -> object:
    return object()
