"""Is this face good enough to recognise? Size, exposure, sharpness and head pose, each with a reason.

Defaults were calibrated on the real faces in shared/faces (see docs in the pipeline README / the
measurements in the pipeline report); the numbers in the comments below come from those runs:
ORL (400), Yale (164), johns (55) and the five single portraits decoded at 640 px.

Units
- ``face_px``: the shorter side of the MTCNN box, in pixels of the analysed image.
- ``brightness``: mean BT.601 luma (0..255) inside the box.
- ``sharpness``: variance of the 4-neighbour Laplacian of the box, in grey, resized to 112x112 and
  standardised to a standard deviation of 50 grey levels. Resizing makes it a property of the face, not
  the photo's resolution; standardising makes a dark or low-contrast face no "blurrier" than a bright
  one (unstandardised, darkening ORL faces to 30 % cut the Laplacian variance ~10x and would have
  reported them as blurred).
- ``Pose`` angles are degrees-like, from the five MTCNN points (see ``estimate_pose``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import types

SHARPNESS_SIZE = 112  # px: the crop is compared at a fixed size
SHARPNESS_STD = 50.0  # grey levels the crop is standardised to before the Laplacian

# How far the nose tip stands in front of the eyes, as a fraction of the inter-eye distance (yaw), and
# of the eye-to-mouth distance (pitch). ~0.5 for an adult face; with it, the most turned heads in ORL
# read ~28 degrees, which is what they look like.
NOSE_DEPTH = 0.5
# Where the nose tip sits between the eye line (0) and the mouth line (1) on a level face: the median
# over ORL, Yale, johns and the portraits was 0.50-0.59.
NOSE_LEVEL = 0.55


@dataclass(frozen=True)
class QualityThresholds:
    # FaceNet sees 160x160; below ~60 px the crop is mostly upsampling. ORL's tight 92x112 crops give
    # 59-91 px faces (2 of 400 under 60); Yale 104-136; johns 110-150; 640 px portraits 90-330.
    min_face_px: float = 60.0
    # Mean luma in the box. Real faces: ORL 86-171, johns 59-170, portraits 118-152, Yale 37-149 (the
    # harsh left/right side-light shots are the only ones under 50: 3 of 164). Faces darkened to
    # 35 / 25 / 15 % read ~41 / 30 / 17 (medians). Washed out (x0.4 + 170) they read 203-231; milder
    # washing (x0.5 + 150, 179-226) kept a cosine of ~0.9 to the original face at every brightness,
    # so the upper limit is only meant for strong overexposure.
    min_brightness: float = 50.0
    max_brightness: float = 210.0
    # Real faces read 38-1100 (5th percentile 59-100 per dataset). A Gaussian blur of radius 3 on
    # faces of 60-150 px reads 3-26, radius 2 reads 4-41; 30 passes every sharp face measured. Blur
    # counts relative to the face: radius 3 on a 300 px face is mild, and reads up to 90.
    min_sharpness: float = 30.0
    # Degrees-like (estimate_pose). Real turned heads: ORL's most turned read 28-30 (5 of 400 flagged:
    # they are visibly turned), the two turned men in group_bald_guys +36 and -28. Pitch over ORL,
    # Yale, johns and the portraits spans -22..+28; roll at most 15 (ORL) and 20 in the group photo;
    # alignment levels the eyes above 20 degrees of roll, so its limit is loose.
    max_yaw: float = 25.0
    max_pitch: float = 30.0
    max_roll: float = 30.0


MESSAGES = {
    "too_small": "The face is too small; move closer to the camera.",
    "too_dark": "The face is too dark; add light in front of you.",
    "too_bright": "The face is overexposed; avoid strong light on your face or behind the camera.",
    "blurred": "The image is blurred; hold still and make sure the camera is in focus.",
    "turned": "The head is turned; look straight at the camera.",
}


def estimate_pose(face: types.Face) -> types.Pose:
    """Head pose from MTCNN's five points, in approximate degrees.

    - roll: angle of the line from the image-left eye to the image-right eye; + when it slopes down to
      the image's right (clockwise on screen, since y points down).
    - yaw: in the roll-corrected frame, the nose's horizontal offset from the eyes' midpoint divided by
      the inter-eye distance (0 for a frontal face), turned into an angle as atan(offset / NOSE_DEPTH);
      + when the nose moves towards the image's right.
    - pitch: where the nose sits between the eye line and the mouth line (0 = on the eye line,
      1 = on the mouth line), relative to NOSE_LEVEL, as atan((NOSE_LEVEL - t) / NOSE_DEPTH);
      + when the nose rises towards the eyes (head tilted back), - when it drops (looking down).

    Landmark geometry cannot give true angles (no depth, person-specific proportions), but the scale
    makes a 25 degree limit mean roughly what it says.
    """
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    eye_dx, eye_dy = rx - lx, ry - ly
    roll = math.degrees(math.atan2(eye_dy, eye_dx))
    eye_dist = math.hypot(eye_dx, eye_dy)
    if eye_dist < 1e-6:
        return types.Pose(yaw=0.0, pitch=0.0, roll=roll)

    # Rotate about the eyes' midpoint so the eye line is horizontal.
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    cos_r, sin_r = eye_dx / eye_dist, eye_dy / eye_dist

    def level(x: float, y: float) -> tuple[float, float]:
        x, y = x - cx, y - cy
        return x * cos_r + y * sin_r, -x * sin_r + y * cos_r

    nose_x, nose_y = level(nx, ny)
    mouth_y = (level(mlx, mly)[1] + level(mrx, mry)[1]) / 2
    yaw = math.degrees(math.atan2(nose_x / eye_dist, NOSE_DEPTH))
    if mouth_y > 1e-6:
        pitch = math.degrees(math.atan2(NOSE_LEVEL - nose_y / mouth_y, NOSE_DEPTH))
    else:  # mouth at or above the eyes: not an upright face
        pitch = 90.0
    return types.Pose(yaw=yaw, pitch=pitch, roll=roll)


def face_box_pixels(image: np.ndarray, face: types.Face) -> np.ndarray:
    """The box's pixels, clipped to the image (at least 1x1)."""
    height, width = image.shape[:2]
    x1 = min(max(int(math.floor(face.box[0])), 0), width - 1)
    y1 = min(max(int(math.floor(face.box[1])), 0), height - 1)
    x2 = max(min(int(math.ceil(face.box[2])), width), x1 + 1)
    y2 = max(min(int(math.ceil(face.box[3])), height), y1 + 1)
    return image[y1:y2, x1:x2]


def luma(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    rgb = rgb.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of ``grey`` resized to 112x112 and standardised (see module doc)."""
    from PIL import Image

    small = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).resize(
        (SHARPNESS_SIZE, SHARPNESS_SIZE), Image.Resampling.BILINEAR
    )
    g = np.asarray(small, dtype=np.float64)
    std = g.std()
    g = (g - g.mean()) * (SHARPNESS_STD / max(std, 1.0))  # flat crops stay flat instead of exploding
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def assess(
    image: np.ndarray, face: types.Face, thresholds: QualityThresholds | None = None
) -> types.QualityReport:
    t = thresholds or QualityThresholds()
    grey = luma(face_box_pixels(image, face))
    face_px = float(min(face.width, face.height))
    brightness = float(grey.mean())
    sharp = sharpness(grey)
    pose = estimate_pose(face)

    issues: list[types.QualityIssue] = []

    def issue(reason: str, value: float, limit: float, detail: str = "") -> None:
        message = MESSAGES[reason] + (f" ({detail})" if detail else "")
        issues.append(types.QualityIssue(reason=reason, message=message, value=float(value), limit=float(limit)))

    if face_px < t.min_face_px:
        issue("too_small", face_px, t.min_face_px, f"{face_px:.0f} px, at least {t.min_face_px:.0f} needed")
    if brightness < t.min_brightness:
        issue("too_dark", brightness, t.min_brightness)
    elif brightness > t.max_brightness:
        issue("too_bright", brightness, t.max_brightness)
    if sharp < t.min_sharpness:
        issue("blurred", sharp, t.min_sharpness)
    # One "turned" issue for the axis furthest past its limit, so ``reasons`` stays a set of distinct words.
    axes = (("yaw", pose.yaw, t.max_yaw), ("pitch", pose.pitch, t.max_pitch), ("roll", pose.roll, t.max_roll))
    over = [(abs(angle) / limit, name, angle, limit) for name, angle, limit in axes if abs(angle) > limit]
    if over:
        _, name, angle, limit = max(over)
        issue("turned", abs(angle), limit, f"{name} {angle:+.0f} degrees, limit {limit:.0f}")

    return types.QualityReport(face_px=face_px, brightness=brightness, sharpness=sharp, pose=pose, issues=tuple(issues))


def brighten(image: np.ndarray) -> np.ndarray:
    """Stretch a dark frame's luminance to the full range (1 % clipped at each end), colours kept.

    Why this one: on 200 real faces (johns, Yale, ORL, portraits) darkened to 15/25/35 % with sensor
    noise (sigma 2) and JPEG q80, MTCNN found 80.5/98/99.5 % without it and 100 % with it, and the
    embedding's cosine to the undarkened face rose from 0.64/0.87/0.92 to 0.86/0.93/0.95 (means).
    A gamma to mid-grey rescued fewer (91 % at 15 %; cosine 0.82) and histogram equalisation less.
    """
    from PIL import Image, ImageOps

    rgb = np.ascontiguousarray(image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2))
    return np.asarray(ImageOps.autocontrast(Image.fromarray(rgb), cutoff=1, preserve_tone=True)).copy()


def expose_face(
    image: np.ndarray,
    face: types.Face,
    *,
    dark_below: float,
    bright_above: float,
    target: float,
    max_gain: float,
    margin: float = 0.6,
) -> tuple[np.ndarray, float] | None:
    """Face-priority exposure, as a phone camera meters on the face: a copy of ``image`` whose region
    around ``face`` (the box grown by ``margin`` of its size on every side, which holds the aligned crop)
    is brought to a face luma of ``target``; None when the face's luma is within
    [``dark_below``, ``bright_above``] already. Returns (image, the factor applied: a gain for a dark
    face, the gamma for a bright one).

    A dark face gets a gain (at most ``max_gain``; the sensor's noise grows with it); a bright one a gamma
    above 1, which pulls highlights down and keeps what is left of their detail (a clipped pixel stays
    white). The whole-frame auto-contrast (``brighten``) is kept for frames where no face was found:
    metering a frame that is mostly background stretched the background's range, which multiplied the
    noise on a dim face up to 5 times (bench.accuracy's live protocol, dim light).
    """
    grey = luma(face_box_pixels(image, face))
    mean = float(grey.mean())
    if dark_below <= mean <= bright_above:
        return None
    height, width = image.shape[:2]
    grow_x, grow_y = margin * face.width, margin * face.height
    x1, y1 = max(0, int(face.box[0] - grow_x)), max(0, int(face.box[1] - grow_y))
    x2, y2 = min(width, int(math.ceil(face.box[2] + grow_x))), min(height, int(math.ceil(face.box[3] + grow_y)))
    out = image.copy()
    region = out[y1:y2, x1:x2].astype(np.float32)
    if mean < dark_below:
        factor = min(max_gain, target / max(mean, 1.0))
        region *= factor
    else:
        # The gamma that maps the face's mean luma to the target: mean((v/255)^g) is decreasing in g;
        # bisect on the face's own luma values (a few thousand, 30 steps).
        v = np.clip(grey.ravel()[:: max(1, grey.size // 4096)] / 255.0, 1e-4, 1.0)
        lo, hi = 1.0, 8.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if float((v**mid).mean()) * 255 > target:
                lo = mid
            else:
                hi = mid
        factor = (lo + hi) / 2
        region = 255.0 * (np.clip(region, 0, 255) / 255.0) ** factor
    out[y1:y2, x1:x2] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return out, float(factor)
