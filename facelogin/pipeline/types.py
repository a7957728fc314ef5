"""Plain values that cross stage boundaries. No Django, no torch in the signatures.

Coordinates are in the pixels of the decoded (EXIF-rotated) image, x to the right, y down.
Embeddings are ``numpy.float32`` arrays of shape (512,), L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Face:
    """One MTCNN detection."""

    box: Box
    probability: float
    # MTCNN's five points in its own order: the eye on the image's left, the eye on the image's right,
    # nose tip, mouth corner on the image's left, mouth corner on the image's right.
    landmarks: tuple[Point, Point, Point, Point, Point]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> Point:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass(frozen=True)
class Detection:
    """Every face found in one image, largest first."""

    faces: tuple[Face, ...]
    image_size: tuple[int, int]  # width, height

    @property
    def count(self) -> int:
        return len(self.faces)

    @property
    def largest(self) -> Face | None:
        return self.faces[0] if self.faces else None


@dataclass(frozen=True)
class QualityIssue:
    reason: str  # machine-readable: too_small, too_dark, too_bright, blurred, turned
    message: str  # English sentence for people; callers may translate by ``reason``
    value: float
    limit: float


@dataclass(frozen=True)
class Pose:
    """Head pose estimated from the five landmarks, in degrees-like units (see quality.estimate_pose)."""

    yaw: float  # + when the nose moves towards the image's right
    pitch: float
    roll: float


@dataclass(frozen=True)
class QualityReport:
    face_px: float
    brightness: float  # mean luma 0..255 of the face region
    sharpness: float  # variance of the Laplacian of the normalised face crop
    pose: Pose
    issues: tuple[QualityIssue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(issue.reason for issue in self.issues)


@dataclass(frozen=True)
class FrameAnalysis:
    """What one image yields before identity is considered."""

    detection: Detection
    face: Face | None  # the face used (largest), None when no face
    quality: QualityReport | None
    crop: np.ndarray | None = field(default=None, repr=False)  # aligned RGB uint8 160x160x3
    embedding: np.ndarray | None = field(default=None, repr=False)  # float32 (512,), unit norm
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Login frames with liveness on (facelogin.pipeline.mesh / flash / pad): the face's 468-point mesh in
    # image pixels (x, y, relative depth), the mean RGB of its skin (for the screen-colour check), and a
    # presentation-attack detector's score (higher: more likely an attack), each None when not computed.
    mesh: np.ndarray | None = field(default=None, repr=False)
    skin_rgb: tuple[float, float, float] | None = None
    pad_score: float | None = None
