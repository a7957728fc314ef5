"""Face box → the 160x160 RGB crop FaceNet expects.

Below ``min_roll`` the crop is exactly facenet-pytorch's ``extract_face`` (box + ``margin`` in output
pixels, clipped to the image, cut and resized bilinearly to a square; a non-square box is stretched;
test_align.py checks it pixel for pixel). Above it, the face is first rotated so the eye line is level.
The defaults were chosen by measurement on johns + Yale + ORL (numbers beside them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import quality, types
from .detect import as_rgb_array


@dataclass(frozen=True)
class AlignConfig:
    image_size: int = 160  # InceptionResnetV1's input
    # Pixels of the output image added around the box (facenet-pytorch's meaning; its MTCNN uses 0).
    # Measured, verification rate at FAR 1e-3 for margin 0 / 20 / 32 / 44 (CASIA-WebFace FaceNet):
    #   Yale 0.952 / 0.990 / 0.993 / 0.968, ORL 0.969 / 0.987 / 0.989 / 0.991, johns 1.0 for all;
    #   pooled (619 images, 188k impostor pairs) 0.978 / 0.993 / 0.994 / 0.995, and at FAR 1e-4
    #   0.931 / 0.975 / 0.977 / 0.961. 20 and 32 tie; 20 is kept because on tight crops (johns, ID-style
    #   photos) the margin runs off the image and the impostor tail grows with it (johns' 1e-3 impostor
    #   score 0.474 / 0.513 / 0.536 / 0.537).
    # Changing it changes every embedding: enrolled students must be re-embedded.
    margin: int = 20
    # Rotate about the box centre so the eyes are level, for heads rolled by at least ``min_roll``.
    # Measured (cosine to the same face upright, 95 faces): rolled 25 degrees 0.897 -> 0.919, 35 degrees
    # 0.819 -> 0.908; but at 15 degrees levelling cost 0.948 -> 0.934, hence the 20 degree floor. Real
    # heads in ORL / Yale / johns roll at most 15 degrees, so their crops are untouched.
    level_eyes: bool = True
    min_roll: float = 20.0
    # Where box + margin runs off the image: False cuts it off and stretches the rest to a square
    # (extract_face); True keeps the face's geometry and fills the outside with ``pad_colour``.
    pad_outside: bool = False
    pad_colour: tuple[int, int, int] = (128, 128, 128)
    # Light normalisation of the crop: its central luma brought to mean 128 and this standard deviation
    # (None: off), then a Gaussian blur of ``contrast_blur`` px (noise lifted with the contrast).
    contrast_std: float | None = None
    contrast_blur: float = 0.0


def margin_box(box: types.Box, image_size: int, margin: int) -> tuple[float, float, float, float]:
    """The box grown by ``margin`` output pixels, as facenet-pytorch's extract_face computes it."""
    mx = margin * (box[2] - box[0]) / (image_size - margin)
    my = margin * (box[3] - box[1]) / (image_size - margin)
    return (box[0] - mx / 2, box[1] - my / 2, box[2] + mx / 2, box[3] + my / 2)


def _roll_degrees(face: types.Face) -> float:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def align_face(image: np.ndarray, face: types.Face, config: AlignConfig | None = None) -> np.ndarray:
    """A uint8 (size, size, 3) RGB crop of ``face`` from ``image`` (RGB uint8, the detection's image)."""
    cfg = config or AlignConfig()
    if cfg.margin >= cfg.image_size:
        raise ValueError("margin must be smaller than image_size")
    pil = Image.fromarray(as_rgb_array(image))
    width, height = pil.size
    x1, y1, x2, y2 = margin_box(face.box, cfg.image_size, cfg.margin)
    roll = _roll_degrees(face) if cfg.level_eyes else 0.0

    if abs(roll) < cfg.min_roll and cfg.pad_outside:
        crop = _padded_crop(pil, (x1, y1, x2, y2), cfg.pad_colour)
    elif abs(roll) < cfg.min_roll:
        # extract_face: clip to the image, truncate to int, crop, resize bilinearly.
        box = (
            int(max(x1, 0)),
            int(max(y1, 0)),
            int(min(x2, width)),
            int(min(y2, height)),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            box = (0, 0, width, height)  # a degenerate box: better a wrong crop than a crash
        crop = pil.crop(box)
    else:
        # Cut a square around the box centre big enough for the box at any angle (half-diagonal),
        # rotate it so the eyes are level, then cut the box itself from the middle.
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        bw, bh = x2 - x1, y2 - y1
        half = math.ceil(math.hypot(bw, bh) / 2) + 1
        region = pil.crop((round(cx) - half, round(cy) - half, round(cx) + half, round(cy) + half))
        # PIL rotates counter-clockwise for positive angles; positive roll means the eye line slopes
        # down to the right (clockwise on screen), so rotating by +roll levels it.
        region = region.rotate(roll, resample=Image.Resampling.BILINEAR, center=(half, half))
        crop = region.crop((round(half - bw / 2), round(half - bh / 2), round(half + bw / 2), round(half + bh / 2)))

    crop = crop.resize((cfg.image_size, cfg.image_size), Image.Resampling.BILINEAR)
    out = np.asarray(crop, dtype=np.uint8).copy()
    if cfg.contrast_std is not None:
        out = normalise_light(out, cfg.contrast_std, cfg.contrast_blur)
    return out


def _padded_crop(pil: Image.Image, box: tuple[float, float, float, float], colour: tuple[int, int, int]) -> Image.Image:
    """``box`` cut from ``pil`` with the part outside the image in ``colour`` (PIL would fill it black)."""
    x1, y1 = int(box[0]), int(box[1])
    x2, y2 = max(int(box[2]), x1 + 1), max(int(box[3]), y1 + 1)
    crop = Image.new("RGB", (x2 - x1, y2 - y1), colour)
    inside = (max(x1, 0), max(y1, 0), min(x2, pil.width), min(y2, pil.height))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        crop.paste(pil.crop(inside), (inside[0] - x1, inside[1] - y1))
    return crop


def normalise_light(crop: np.ndarray, std: float, blur: float) -> np.ndarray:
    """The crop's central region (the face, not the margin) brought to luma mean 128 and ``std``."""
    pixels = crop.astype(np.float32)
    n = crop.shape[0]
    luma = quality.luma(pixels[n // 4 : n - n // 8, n // 5 : n - n // 5])
    scaled = (pixels - float(luma.mean())) * (std / max(float(luma.std()), 1.0)) + 128.0
    out = np.clip(scaled, 0, 255).astype(np.uint8)
    if blur > 0:
        from PIL import ImageFilter

        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(blur)), dtype=np.uint8)
    return out


# SFace's 112x112 template for the five points (OpenCV's face_recognize.cpp, the ArcFace layout):
# left eye, right eye, nose tip, left and right mouth corners, as MTCNN orders them.
FIVE_POINT_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + translation taking ``src`` points nearest to ``dst`` (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / a.var(axis=0).sum())
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def align_five_points(image: np.ndarray, face: types.Face, size: int = 112) -> np.ndarray:
    """A uint8 (size, size, 3) RGB crop with the face's five points moved onto SFace's template."""
    pil = Image.fromarray(as_rgb_array(image))
    matrix = similarity_transform(np.asarray(face.landmarks, np.float64), FIVE_POINT_TEMPLATE * (size / 112))
    # PIL maps output pixels back to input pixels: the inverse transform.
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    # PIL samples at pixel centres (x + 0.5); OpenCV's warpAffine, which SFace was used with, at x.
    inverse[:, 2] += 0.5 - 0.5 * inverse[:, :2].sum(axis=1)
    crop = pil.transform((size, size), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.uint8).copy()
