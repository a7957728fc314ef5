"""A photo's head lifted into 3-D and turned: the benchmarks' stand-in for a person at a webcam.

The datasets hold photos, not videos of people turning their heads. To make a genuine sign-in (and the
attacks that imitate one) the photo is placed on a 640x480 webcam canvas, MediaPipe's face mesh (the same
model the portal's liveness check runs, facelogin.pipeline.mesh) gives 468 points with relative depth,
rings of points around the face stand for the rest of the head (further back the further out), and the
canvas border stays put (the room). Turning rotates the head's points about a vertical axis behind the
face; the picture is re-drawn triangle by triangle (painter's order, hidden triangles culled), so the
nose moves against the cheeks and the far cheek narrows as in a real turn. Up to about 30 degrees the
result reads as a turned head to MTCNN, FaceNet and the mesh itself (see the README's attack section).

What this cannot show: ears and hair that were hidden, the neck's own motion, expression. A real turn
has all of that and more parallax, not less, so the liveness thresholds measured on these renders are
the conservative side for genuine students.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

FRAME_SIZE = (640, 480)
BACKGROUND = (118, 122, 128)


def load_photo(path: Path, mirror: bool = False) -> Image.Image:
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else image


def place(photo: Image.Image, face_height: int, *, offset: tuple[int, int] = (0, 0), size=FRAME_SIZE, background=BACKGROUND) -> np.ndarray:
    """The photo scaled to ``face_height`` px tall in the middle of a plain webcam canvas (RGB uint8)."""
    scale = face_height / photo.height
    scaled = photo.resize((max(1, round(photo.width * scale)), face_height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", size, background)
    canvas.paste(scaled, ((size[0] - scaled.width) // 2 + offset[0], (size[1] - scaled.height) // 2 + offset[1]))
    return np.asarray(canvas)


# Towards the screen (below the camera) and towards the room's main light (above, to one side), in the
# canvas's axes: x right, y down, z away from the camera.
SCREEN_LIGHT = np.array([0.0, 0.35, -1.0]) / np.hypot(0.35, 1.0)
KEY_LIGHT = np.array([0.45, -0.6, -1.0]) / np.linalg.norm([0.45, -0.6, -1.0])
ROOM_REFLECTION = 0.25  # the wall behind, further from the screen than the face


@dataclass
class Render:
    image: np.ndarray  # RGB uint8, the canvas with the head turned (shaded by the room's light)
    head: np.ndarray  # bool mask of the head's pixels
    screen: np.ndarray  # float32 0..1: how directly each pixel faces the screen (its reflection of it)


class Head:
    """One photo on one canvas, turnable. Build with ``Head.from_canvas`` (runs MTCNN and the mesh once)."""

    def __init__(self, canvas: np.ndarray, mesh: np.ndarray, face_width: float) -> None:
        from scipy.spatial import ConvexHull, Delaunay

        self.canvas = np.ascontiguousarray(canvas)
        height, width = canvas.shape[:2]
        points = mesh.astype(np.float64)
        centre = points[:, :2].mean(axis=0)
        hull = points[ConvexHull(points[:, :2]).vertices]
        # The head's rotation axis sits behind the face (about half a face width behind its mean depth).
        axis_depth = points[:, 2].mean() + 0.55 * face_width
        rings = []
        for spread, back in ((1.15, 0.25), (1.45, 0.6), (1.9, 0.9)):  # hairline and cheeks, ears, the head's outline
            ring = hull.copy()
            ring[:, :2] = centre + (hull[:, :2] - centre) * spread
            ring[:, 2] = hull[:, 2] + (axis_depth - hull[:, 2]) * back
            rings.append(ring)
        # The room: a ring further out that stays put (the head's outline stretches over it as it turns),
        # and the canvas's border. Only triangles with a corner on the head are drawn.
        still = hull.copy()
        still[:, :2] = centre + (hull[:, :2] - centre) * 2.6
        still[:, 2] = axis_depth + face_width
        n = 12
        edge = [(x, y) for x in np.linspace(0, width - 1, n) for y in (0, height - 1)]
        edge += [(x, y) for y in np.linspace(0, height - 1, n)[1:-1] for x in (0, width - 1)]
        room = np.vstack([still, np.array([(x, y, axis_depth + face_width) for x, y in edge])])
        self.head_points = len(points) + sum(len(r) for r in rings)
        skin_points = len(points) + len(rings[0])  # the face and the ring just around it: lit, and shaded
        self.points = np.vstack([points, *rings, room])
        self.triangles = Delaunay(self.points[:, :2]).simplices
        self.axis = (float(centre[0]), float(centre[1]), float(axis_depth))
        # Triangles with a corner on the head move (those made only of the room's points never do, and are
        # not drawn); those made only of the face and the ring around it are the person the room's and the
        # screen's light fall on (bench.actors.Camera).
        self.moving = (self.triangles < self.head_points).any(axis=1)
        self.person = (self.triangles < skin_points).all(axis=1)
        self.normals = _normals(self.points, self.triangles)

    @classmethod
    def from_canvas(cls, canvas: np.ndarray) -> Head | None:
        """None when MTCNN or the mesh finds no face on the canvas."""
        detector, mesher = _models()
        face = detector.detect(canvas).largest
        if face is None:
            return None
        mesh = mesher.mesh(canvas, face)
        return None if mesh is None else cls(canvas, mesh, face.width)

    def project(self, yaw: float, pitch: float = 0.0) -> np.ndarray:
        """The points after turning the head by ``yaw`` degrees (+: the nose towards the image's right)
        and nodding by ``pitch`` (+: chin up)."""
        q = self.points.copy()
        head = slice(0, self.head_points)
        cx, cy, cz = self.axis
        a = math.radians(yaw)
        x, z = q[head, 0] - cx, q[head, 2] - cz
        q[head, 0] = x * math.cos(a) - z * math.sin(a) + cx
        q[head, 2] = x * math.sin(a) + z * math.cos(a) + cz
        if pitch:
            b = math.radians(pitch)
            y, z = q[head, 1] - cy, q[head, 2] - cz
            q[head, 1] = y * math.cos(b) - z * math.sin(b) + cy
            q[head, 2] = y * math.sin(b) + z * math.cos(b) + cz
        return q

    def render(self, yaw: float, pitch: float = 0.0, *, key_light: np.ndarray = KEY_LIGHT) -> Render:
        """The head turned; the room's light shades what turns towards or away from it (the photo holds
        the shading of its own pose, so each triangle gets the change), and ``screen`` says how directly
        each pixel faces the screen below the camera."""
        height, width = self.canvas.shape[:2]
        q = self.project(yaw, pitch)
        source, target = self.points[:, :2][self.triangles], q[:, :2][self.triangles]
        area_source = _cross(source)
        area_target = _cross(target)
        visible = (np.sign(area_source) == np.sign(area_target)) & (np.abs(area_target) > 1e-6) & self.moving
        depth = q[:, 2][self.triangles].mean(axis=1)
        index = Image.new("I", (width, height), -1)
        draw = ImageDraw.Draw(index)
        for t in np.argsort(-depth):  # far first: nearer triangles paint over them
            if visible[t]:
                draw.polygon([tuple(v) for v in target[t]], fill=int(t))
        triangle_of = np.asarray(index)
        ys, xs = np.nonzero(triangle_of >= 0)
        t = triangle_of[ys, xs]
        # Per triangle, the affine map from target pixels back to source pixels.
        homogeneous = np.concatenate([target, np.ones((len(target), 3, 1))], axis=2)
        maps = np.linalg.pinv(homogeneous) @ source  # (T, 3, 2)
        pixels = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], axis=1)
        where = np.einsum("nk,nkj->nj", pixels, maps[t]) - 0.5
        normals = _normals(q, self.triangles)
        lit = lambda n: 0.55 + 0.45 * np.clip(n @ key_light, 0.0, 1.0)  # noqa: E731 - ambient + key light
        shade = np.where(self.person, lit(normals) / lit(self.normals), 1.0).astype(np.float32)
        facing = np.where(self.person, np.clip(normals @ SCREEN_LIGHT, 0.0, 1.0), ROOM_REFLECTION).astype(np.float32)
        out = self.canvas.copy()
        sampled = _bilinear(self.canvas, where[:, 0], where[:, 1]).astype(np.float32) * shade[t][:, None]
        out[ys, xs] = np.clip(sampled + 0.5, 0, 255).astype(np.uint8)
        mask = np.zeros((height, width), dtype=bool)
        mask[ys, xs] = self.person[t]
        screen = np.full((height, width), ROOM_REFLECTION, dtype=np.float32)
        screen[ys, xs] = facing[t]
        return Render(out, mask, screen)


def _normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals of the triangles, pointing towards the camera (z < 0)."""
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    n = np.cross(b - a, c - a)
    n *= np.where(n[:, 2:3] > 0, -1.0, 1.0)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)


def _cross(triangles: np.ndarray) -> np.ndarray:
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    x = np.clip(x, 0, width - 1.001).astype(np.float32)
    y = np.clip(y, 0, height - 1.001).astype(np.float32)
    x0, y0 = x.astype(np.int32), y.astype(np.int32)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0].astype(np.float32) * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0].astype(np.float32) * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return np.clip(top * (1 - fy) + bottom * fy + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _models():
    from facelogin.pipeline.detect import FaceDetector
    from facelogin.pipeline.mesh import FaceMesher

    return FaceDetector(), FaceMesher()


__all__ = ["BACKGROUND", "FRAME_SIZE", "Head", "Render", "load_photo", "place"]
