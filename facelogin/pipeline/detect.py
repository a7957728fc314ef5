"""Face detection: facenet-pytorch's MTCNN behind a narrow interface.

MTCNN's cost is its P-Net pyramid, which follows (image side / min_face_size)^2: 92 ms for a 640x480
frame at min_face_size 20, 25-32 ms at 40 on 320x240 or 80 on 640x480 (shared/notes/performance.md).
So images whose long side exceeds ``max_side`` are detected on a downscaled copy and the boxes scaled
back; ``min_face_size`` is in pixels *of that detection copy* (a 2048 px photo detected at 640 px with
min 40 finds faces from ~128 original px up, which any usable portrait has).

The model (three small nets shipped inside the facenet-pytorch wheel, ~2 MB) loads on first use, once
per detector, under a lock. Its nets run in channels-last memory format: torch's CPU max-pool over
contiguous NCHW tensors measured ~10x slower than over channels-last ones on this machine (15 vs 1.5 ms
for O-Net's first pool), and MTCNN pools after nearly every convolution. Boxes are the same to 1e-4 px.

MTCNN's stages run through ``mtcnn.detect_faces``: facenet-pytorch's own nets and box code with the
image resampling done at once (the same boxes bit for bit; 320x240 login frames 15.3 -> 10.4 ms).

``detect_batch`` runs same-size images through MTCNN together (one P-Net pass per pyramid scale, one
R-Net and one O-Net pass for all candidates): 320x240 login frames measured 13.6 ms a frame in batches
of 8 against 23.6 ms one at a time (tests/pipeline/test_detect.py checks both give the same faces).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import types

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorConfig:
    min_face_size: int = 40  # px in the detection image; 20 (MTCNN's default) costs ~3x more per frame
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net: MTCNN's defaults
    factor: float = 0.709  # pyramid step, MTCNN's default
    max_side: int | None = 640  # long side of the detection image; None detects at full size


def as_rgb_array(image: np.ndarray) -> np.ndarray:
    """Accept (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 and return contiguous (H, W, 3) uint8."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def resize_long_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the long side is <= max_side. Returns (image, scale) with scale = new / old (<= 1)."""
    from PIL import Image

    height, width = image.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return small, scale


class FaceDetector:
    """Thread-safe once loaded: MTCNN's forward keeps no state between calls."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._mtcnn: MTCNN | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the model now (e.g. at worker start) instead of on the first frame."""
        self._model()

    def _model(self) -> Any:
        if self._mtcnn is None:
            with self._lock:
                if self._mtcnn is None:
                    from facenet_pytorch import MTCNN  # heavy import (torch, torchvision): only on use

                    cfg = self.config
                    mtcnn = MTCNN(
                        keep_all=True,
                        select_largest=True,
                        device="cpu",
                        min_face_size=cfg.min_face_size,
                        thresholds=list(cfg.thresholds),
                        factor=cfg.factor,
                    )
                    mtcnn.eval()
                    import torch

                    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
                        net.to(memory_format=torch.channels_last)  # see the module doc
                    self._mtcnn = mtcnn
        return self._mtcnn

    def _detection_image(self, image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(the RGB image, the copy MTCNN sees): at most the configured side, or ``max_side`` if smaller."""
        rgb = as_rgb_array(image)
        sides = [v for v in (self.config.max_side, max_side) if v is not None]
        return rgb, (resize_long_side(rgb, min(sides))[0] if sides else rgb)

    def detect(self, image: np.ndarray, *, max_side: int | None = None) -> types.Detection:
        """Every face in ``image`` (RGB uint8), largest first, in ``image``'s own pixel coordinates.

        ``max_side`` detects on a smaller copy than the configured one (never a larger one).
        """
        rgb, small = self._detection_image(image, max_side)
        return self._detect_small(rgb, small)

    def detect_batch(self, images: Sequence[np.ndarray], *, max_side: int | None = None) -> list[types.Detection]:
        """``detect`` for each image, in order; images whose detection copies share a size go through
        MTCNN together. A group MTCNN cannot take at once falls back to one image at a time."""
        prepared = [self._detection_image(image, max_side) for image in images]
        results: list[types.Detection | None] = [None] * len(prepared)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (_, small) in enumerate(prepared):
            if min(small.shape[:2]) >= self.config.min_face_size:
                groups.setdefault(small.shape, []).append(index)
        for indices in groups.values():
            if len(indices) < 2:
                continue
            found = self._run_mtcnn([prepared[i][1] for i in indices])
            if found is None:
                continue
            for i, (boxes, probs, points) in zip(indices, zip(*found)):
                results[i] = self._faces(prepared[i][0], prepared[i][1], boxes, probs, points)
        return [result if result is not None else self._detect_small(*prepared[i]) for i, result in enumerate(results)]

    def _run_mtcnn(self, small: np.ndarray | list[np.ndarray]) -> tuple | None:
        """MTCNN's (boxes, probs, points) for one image or a list of same-size ones (then a list of each);
        None when it fails."""
        import torch

        from .mtcnn import detect_faces

        images = np.stack(small) if isinstance(small, list) else small[None]
        cfg = self.config
        try:
            with torch.inference_mode():
                found = detect_faces(self._model(), images, cfg.min_face_size, cfg.thresholds, cfg.factor)
        except (ValueError, RuntimeError) as exc:  # degenerate shapes deep in the pyramid
            log.warning("MTCNN failed on %s image(s) of %s: %s", len(images), images.shape[1:], exc)
            return None
        return tuple(zip(*found)) if isinstance(small, list) else found[0]

    def _detect_small(self, rgb: np.ndarray, small: np.ndarray) -> types.Detection:
        # MTCNN's pyramid is empty when the short side is under min_face_size, and it then raises
        # ValueError from torch.cat (seen in the browser tests): no face can be that small anyway.
        if min(small.shape[:2]) < self.config.min_face_size:
            return types.Detection(faces=(), image_size=(rgb.shape[1], rgb.shape[0]))
        found = self._run_mtcnn(small)
        boxes, probs, points = found if found is not None else (None, None, None)
        return self._faces(rgb, small, boxes, probs, points)

    @staticmethod
    def _faces(rgb: np.ndarray, small: np.ndarray, boxes: Any, probs: Any, points: Any) -> types.Detection:
        height, width = rgb.shape[:2]
        size = (width, height)
        if boxes is None or len(boxes) == 0:
            return types.Detection(faces=(), image_size=size)

        # Scale back per axis: rounding the small image's size makes x and y ratios differ slightly.
        sx = width / small.shape[1]
        sy = height / small.shape[0]
        faces = []
        for box, prob, pts in zip(boxes, probs, points):
            x1 = float(np.clip(box[0] * sx, 0, width))
            y1 = float(np.clip(box[1] * sy, 0, height))
            x2 = float(np.clip(box[2] * sx, 0, width))
            y2 = float(np.clip(box[3] * sy, 0, height))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            landmarks = tuple((float(px * sx), float(py * sy)) for px, py in pts)
            face = types.Face(box=(x1, y1, x2, y2), probability=float(prob), landmarks=landmarks)  # type: ignore[arg-type]
            faces.append(face)
        faces.sort(key=lambda f: f.area, reverse=True)  # clipping can change MTCNN's own order
        return types.Detection(faces=tuple(faces), image_size=size)
