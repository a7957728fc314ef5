"""facelogin.pipeline.quality: every reason triggered by a real image, real faces passing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facelogin.pipeline import quality, types
from facelogin.pipeline.decode import LIVE_FORMATS, decode_image
from facelogin.pipeline.detect import FaceDetector
from facelogin.pipeline.quality import QualityThresholds, assess, estimate_pose

ALL_FORMATS = (*LIVE_FORMATS, "PPM")
JOHN = "johns/John_Salley/000179_02159509.jpg"  # a frontal, evenly lit 150x150 face
TOM = "photos/Tom_Cruise_avp_2014_4.jpg"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    import torch

    torch.set_num_threads(1)  # see test_detect.py: one thread per process on these 2 shared cores
    return FaceDetector()


def load(faces_dir: Path, name: str, max_side: int | None = 640) -> np.ndarray:
    return decode_image((faces_dir / name).read_bytes(), max_side=max_side, formats=ALL_FORMATS)


def report_of(detector: FaceDetector, image: np.ndarray) -> types.QualityReport:
    face = detector.detect(image).largest
    assert face is not None, "the altered face must still be found, or the test proves nothing"
    return assess(image, face)


def issue(report: types.QualityReport, reason: str) -> types.QualityIssue:
    matches = [i for i in report.issues if i.reason == reason]
    assert matches, f"expected {reason}, got {report.reasons}"
    return matches[0]


def as_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)


# --- real faces pass -----------------------------------------------------------------------------
def test_ordinary_real_faces_pass(detector: FaceDetector, faces_dir: Path) -> None:
    """A sample of every dataset (all the portraits); measured on all 624: ORL 393/400
    (5 turned, 2 at 59 px), Yale 161/164 (3 harsh side-light shots too dark), johns and portraits all."""
    paths = (
        sorted((faces_dir / "johns").glob("*/*.jpg"))[::2]
        + [p for p in sorted((faces_dir / "yale").glob("*/*.png")) if "light" not in p.stem][::4]
        + sorted((faces_dir / "orl").glob("s*/*.pgm"))[::20]
        + [faces_dir / "photos" / n for n in ("angelina_jolie.jpg", "kate_siegel.jpg", "paul_rudd.jpg", "shea_whigham.jpg", "Tom_Cruise_avp_2014_4.jpg")]
    )
    failed = {}
    for path in paths:
        report = report_of(detector, load(faces_dir, str(path.relative_to(faces_dir)), max_side=1280))
        if not report.ok:
            failed[str(path.relative_to(faces_dir))] = report.reasons
    assert not [p for p in failed if p.startswith(("johns", "photos"))], failed
    assert len(failed) <= 0.03 * len(paths), failed


def test_a_report_carries_its_measurements(detector: FaceDetector, faces_dir: Path) -> None:
    report = report_of(detector, load(faces_dir, JOHN))
    assert report.ok and report.reasons == ()
    assert 100 < report.face_px < 150
    assert 60 < report.brightness < 170
    assert report.sharpness > QualityThresholds().min_sharpness
    assert abs(report.pose.yaw) < 10 and abs(report.pose.roll) < 5


# --- each reason, from a real image altered here --------------------------------------------------
@pytest.mark.parametrize("factor", [0.2, 0.25, 0.35])
def test_a_darkened_face_is_too_dark(detector: FaceDetector, faces_dir: Path, factor: float) -> None:
    image = load(faces_dir, JOHN)
    report = report_of(detector, as_u8(image * factor))
    found = issue(report, "too_dark")
    assert found.value < found.limit == 50
    assert "dark" in found.message
    assert "blurred" not in report.reasons  # sharpness is contrast-normalised: dark is not blurred


@pytest.mark.parametrize("name", [TOM, "johns/John_Simm/000288_00470387.jpg"])
def test_a_washed_out_face_is_too_bright(detector: FaceDetector, faces_dir: Path, name: str) -> None:
    report = report_of(detector, as_u8(load(faces_dir, name) * 0.4 + 170))
    found = issue(report, "too_bright")
    assert found.value > found.limit == 210
    assert "too_dark" not in report.reasons


@pytest.mark.parametrize("name", [JOHN, "johns/John_Simm/000288_00470387.jpg", "yale/subject04/normal.png"])
def test_a_gaussian_blur_of_radius_3_is_blurred(detector: FaceDetector, faces_dir: Path, name: str) -> None:
    image = load(faces_dir, name)
    assert "blurred" not in report_of(detector, image).reasons
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(3)))
    found = issue(report_of(detector, blurred), "blurred")
    assert found.value < found.limit


def test_a_webcam_sized_portrait_blurred_is_blurred(detector: FaceDetector, faces_dir: Path) -> None:
    image = Image.fromarray(load(faces_dir, TOM, max_side=None))
    webcam = image.resize((image.width * 150 // 406, image.height * 150 // 406), Image.Resampling.BILINEAR)  # face ~150 px
    assert "blurred" not in report_of(detector, np.asarray(webcam)).reasons
    issue(report_of(detector, np.asarray(webcam.filter(ImageFilter.GaussianBlur(3)))), "blurred")


def test_a_face_shrunk_onto_a_bigger_canvas_is_too_small(detector: FaceDetector, faces_dir: Path) -> None:
    portrait = Image.fromarray(load(faces_dir, TOM, max_side=None))  # face ~406 px wide
    small = portrait.resize((portrait.width * 48 // 406, portrait.height * 48 // 406), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    canvas.paste(small, (300, 150))
    found = issue(report_of(detector, np.asarray(canvas)), "too_small")
    assert found.value < found.limit == 60
    assert "closer" in found.message


def test_a_real_head_turned_in_orl_is_turned(detector: FaceDetector, faces_dir: Path) -> None:
    report = report_of(detector, load(faces_dir, "orl/s4/10.pgm"))
    found = issue(report, "turned")
    assert report.pose.yaw > 25 and found.value == pytest.approx(abs(report.pose.yaw))
    assert "yaw" in found.message
    mirrored = report_of(detector, load(faces_dir, "orl/s4/10.pgm")[:, ::-1].copy())
    assert mirrored.pose.yaw < -25 and "turned" in mirrored.reasons


def test_a_real_turned_head_in_the_group_photo_is_turned(detector: FaceDetector, faces_dir: Path) -> None:
    group = load(faces_dir, "photos/group_bald_guys.jpg", max_side=None)  # 1986x1545
    man = group[1200:1545, 1700:1986].copy()  # the bottom-right man, looking up and to the side
    report = report_of(detector, man)
    assert report.pose.yaw > 30
    issue(report, "turned")
    # His neighbour on the left edge turns the other way.
    other = report_of(detector, group[1180:1545, 0:330].copy())
    assert other.pose.yaw < -25 and "turned" in other.reasons


def test_a_strongly_tilted_head_is_turned_by_roll(detector: FaceDetector, faces_dir: Path) -> None:
    tilted = np.asarray(Image.fromarray(load(faces_dir, JOHN)).rotate(45, resample=Image.Resampling.BILINEAR))
    report = report_of(detector, tilted)
    found = issue(report, "turned")
    assert report.pose.roll < -30 and "roll" in found.message
    assert found.limit == QualityThresholds().max_roll


def test_thresholds_are_configuration(detector: FaceDetector, faces_dir: Path) -> None:
    image = load(faces_dir, JOHN)
    face = detector.detect(image).largest
    assert face is not None
    strict = assess(image, face, QualityThresholds(min_face_px=400, min_brightness=200, min_sharpness=10_000, max_yaw=0.01))
    assert set(strict.reasons) == {"too_small", "too_dark", "blurred", "turned"}
    assert all(i.message.endswith((".", ")")) for i in strict.issues)


# --- pose conventions ----------------------------------------------------------------------------
def test_pose_sign_conventions(detector: FaceDetector, faces_dir: Path) -> None:
    image = load(faces_dir, JOHN)
    frontal = report_of(detector, image).pose
    clockwise = report_of(detector, np.asarray(Image.fromarray(image).rotate(-25, resample=Image.Resampling.BILINEAR))).pose
    assert clockwise.roll > frontal.roll + 15  # clockwise on screen: the eye line slopes down to the right
    looking_up = report_of(detector, load(faces_dir, "orl/s1/9.pgm")).pose  # chin up, nose near the eyes
    looking_down = report_of(detector, load(faces_dir, "orl/s25/10.pgm")).pose
    assert looking_up.pitch > 15 and looking_down.pitch < -15


def test_estimate_pose_on_an_ideal_frontal_layout() -> None:
    face = types.Face(
        box=(0, 0, 100, 120),
        probability=1.0,
        landmarks=((30, 40), (70, 40), (50, 40 + 0.55 * 40), (35, 80), (65, 80)),
    )
    pose = estimate_pose(face)
    assert pose.yaw == pytest.approx(0, abs=1e-9)
    assert pose.pitch == pytest.approx(0, abs=1e-9)
    assert pose.roll == pytest.approx(0, abs=1e-9)
    shifted = types.Face(box=face.box, probability=1.0, landmarks=((30, 40), (70, 40), (60, 62), (35, 80), (65, 80)))
    assert estimate_pose(shifted).yaw == pytest.approx(np.degrees(np.arctan(0.25 / 0.5)))  # nose 1/4 eye distance right


# --- brightening ---------------------------------------------------------------------------------
def test_brighten_rescues_a_dark_frame_for_the_detector(detector: FaceDetector, faces_dir: Path) -> None:
    original = load(faces_dir, TOM)
    rng = np.random.default_rng(0)
    dark = as_u8(original * 0.12 + rng.normal(0, 2, original.shape))  # a dim room with sensor noise
    brightened = quality.brighten(dark)
    assert brightened.shape == dark.shape and brightened.dtype == np.uint8
    report = report_of(detector, brightened)
    assert "too_dark" not in report.reasons and report.brightness > 80
    assert quality.luma(brightened).mean() > 4 * quality.luma(dark).mean()


def test_brighten_keeps_a_greyscale_image_grey(faces_dir: Path) -> None:
    grey = load(faces_dir, "yale/subject02/normal.png")
    out = quality.brighten(as_u8(grey * 0.2))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
