"""Head motion from dense landmarks: is it a head turning in 3-D, or a flat picture moving?

Given the face mesh of a baseline frame (468 points with depth) and of a later frame (their 2-D points):

* ``rigid_motion`` fits the weak-perspective rigid motion of the baseline's 3-D points that best
  explains the later 2-D points: its yaw is the head turn as parallax measures it (the nose tip moves
  against the cheeks), and its residual how far the later points are from any rigid motion of the head.
* ``planar_residual`` fits the best homography between the two point sets: the motion of ANY flat
  picture, however it is tilted, turned or moved in front of the camera, is a homography.

A real head turn is explained by the rigid 3-D motion and not by a homography; a turned or bent picture
the other way round. Measured (bench.attacks' rendered heads and perspective-warped photos, ORL, Yale,
johns): a 3-D turn of 20 degrees fitted 13-19 degrees of yaw with a rigid residual of 0.009-0.017 eye
distances and a homography residual of 0.032-0.046; a photo turned 35-50 degrees as a flat print
fitted 2-9 degrees of yaw, a rigid residual of 0.019-0.060 and a homography residual of 0.012-0.042.

Units: residuals are root-mean-square point errors divided by the baseline's outer eye-corner distance.
Angles are degrees of the fitted rotation (about 0.75 of a rendered head's true yaw: the mesh's depth
is relative, flatter than a real head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .mesh import OUTER_EYE_CORNERS


@dataclass(frozen=True)
class Motion:
    yaw: float  # + when the nose moves towards the image's right (the face's left turns away)
    pitch: float
    roll: float
    scale: float  # later size / baseline size
    rigid_residual: float  # eye distances
    planar_residual: float  # eye distances

    @property
    def parallax_ratio(self) -> float:
        """How much better a rigid head explains the motion than a flat picture (> 1: a head)."""
        return self.planar_residual / max(self.rigid_residual, 1e-6)


def eye_distance(points: np.ndarray) -> float:
    left, right = OUTER_EYE_CORNERS
    return max(float(np.linalg.norm(points[left, :2] - points[right, :2])), 1e-6)


def rigid_motion(baseline: np.ndarray, later: np.ndarray) -> tuple[float, float, float, float, float]:
    """(yaw, pitch, roll, scale, residual in eye distances) of ``later``'s 2-D points as a weak-perspective
    rigid motion of ``baseline``'s 3-D points."""
    X = baseline.astype(np.float64)
    X = X - X.mean(axis=0)
    x = later[:, :2].astype(np.float64)
    x = x - x.mean(axis=0)
    projection, *_ = np.linalg.lstsq(X, x, rcond=None)  # x ≈ X @ projection, projection (3, 2)
    u, s, vt = np.linalg.svd(projection.T, full_matrices=False)
    rows = u @ vt  # the nearest two orthonormal rows of a rotation
    scale = float(s.mean())
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    yaw = math.degrees(math.asin(float(np.clip(-rotation[0, 2], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(rotation[1, 2], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    error = X @ (scale * rows).T - x
    residual = float(np.sqrt((error**2).sum(axis=1).mean())) / eye_distance(baseline)
    return yaw, pitch, roll, scale, residual


def homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 homography mapping ``source`` (n, 2) onto ``target`` (n, 2) in the least-squares sense
    (normalised DLT, Hartley and Zisserman's algorithm 4.2)."""

    def normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centre = points.mean(axis=0)
        spread = np.sqrt(((points - centre) ** 2).sum(axis=1)).mean()
        k = math.sqrt(2) / max(spread, 1e-9)
        transform = np.array([[k, 0, -k * centre[0]], [0, k, -k * centre[1]], [0, 0, 1]])
        return transform, (points - centre) * k

    ts, a = normalise(source.astype(np.float64))
    tt, b = normalise(target.astype(np.float64))
    n = len(a)
    rows = np.zeros((2 * n, 9))
    rows[0::2, 0:2], rows[0::2, 2] = -a, -1
    rows[0::2, 6:8], rows[0::2, 8] = b[:, :1] * a, b[:, 0]
    rows[1::2, 3:5], rows[1::2, 5] = -a, -1
    rows[1::2, 6:8], rows[1::2, 8] = b[:, 1:] * a, b[:, 1]
    # Only V's last row is used. For a mesh (936 rows) the full U was 936x936: 5 ms of the event loop a
    # frame, against 0.07 ms without it, and the same V bit for bit. Four points give fewer rows than
    # columns, and then only the full V holds the null vector.
    _, _, vt = np.linalg.svd(rows, full_matrices=rows.shape[0] < rows.shape[1])
    h = np.linalg.inv(tt) @ vt[-1].reshape(3, 3) @ ts
    return h / h[2, 2]


def planar_residual(baseline: np.ndarray, later: np.ndarray) -> float:
    """How far ``later``'s points are from the best flat-picture motion of ``baseline``'s, in eye distances."""
    source, target = baseline[:, :2].astype(np.float64), later[:, :2].astype(np.float64)
    h = homography(source, target)
    mapped = np.c_[source, np.ones(len(source))] @ h.T
    mapped = mapped[:, :2] / mapped[:, 2:3]
    return float(np.sqrt(((mapped - target) ** 2).sum(axis=1).mean())) / eye_distance(baseline)


def motion(baseline: np.ndarray, later: np.ndarray) -> Motion:
    yaw, pitch, roll, scale, rigid = rigid_motion(baseline, later)
    return Motion(yaw, pitch, roll, scale, rigid, planar_residual(baseline, later))


def mesh_yaw(points: np.ndarray) -> float:
    """The head's yaw on its own (no baseline), from the slope of the mesh's depth across the face.

    Used to pick a frontal baseline; about half the degrees of MTCNN's five-point estimate, and (unlike
    it) nearly symmetric under mirroring: measured -0.4/+1.6 for a frontal ORL face and its mirror image.
    """
    x = points[:, 0] - points[:, 0].mean()
    y = points[:, 1] - points[:, 1].mean()
    design = np.c_[x, y, np.ones(len(points))]
    coefficients, *_ = np.linalg.lstsq(design, points[:, 2].astype(np.float64), rcond=None)
    return math.degrees(math.atan(float(coefficients[0])))


__all__ = ["Motion", "eye_distance", "homography", "mesh_yaw", "motion", "planar_residual", "rigid_motion"]
