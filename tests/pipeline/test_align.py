"""facelogin.pipeline.align: facenet-pytorch's crop, eye levelling, and the margin that was measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelogin.pipeline import types
from facelogin.pipeline.align import AlignConfig, align_face
from facelogin.pipeline.decode import decode_image
from facelogin.pipeline.detect import FaceDetector
from facelogin.pipeline.quality import estimate_pose

JOHN = "johns/John_Salley/000179_02159509.jpg"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    import torch

    torch.set_num_threads(1)  # see test_detect.py
    return FaceDetector()


def load(faces_dir: Path, name: str, max_side: int | None = 640) -> np.ndarray:
    return decode_image((faces_dir / name).read_bytes(), max_side=max_side)


def face_of(detector: FaceDetector, image: np.ndarray) -> types.Face:
    face = detector.detect(image).largest
    assert face is not None
    return face


@pytest.mark.parametrize("name", [JOHN, "photos/kate_siegel.jpg", "yale/subject07/glasses.png"])
@pytest.mark.parametrize("margin", [0, 20, 32])
def test_without_levelling_the_crop_is_facenet_pytorchs_extract_face(
    detector: FaceDetector, faces_dir: Path, name: str, margin: int
) -> None:
    from facenet_pytorch.models.utils.detect_face import extract_face

    image = load(faces_dir, name)
    face = face_of(detector, image)
    expected = extract_face(Image.fromarray(image), np.array(face.box), 160, margin)
    expected = expected.permute(1, 2, 0).numpy().astype(np.uint8)
    crop = align_face(image, face, AlignConfig(margin=margin, level_eyes=False))
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, expected)


def test_the_defaults_are_the_measured_ones() -> None:
    config = AlignConfig()
    assert (config.image_size, config.margin, config.level_eyes, config.min_roll) == (160, 20, True, 20.0)


def test_a_slightly_rolled_head_is_not_resampled_twice(detector: FaceDetector, faces_dir: Path) -> None:
    image = np.asarray(Image.fromarray(load(faces_dir, JOHN)).rotate(10, resample=Image.Resampling.BILINEAR))
    face = face_of(detector, image)
    assert 5 < abs(estimate_pose(face).roll) < 20
    assert np.array_equal(align_face(image, face), align_face(image, face, AlignConfig(level_eyes=False)))


@pytest.mark.parametrize("angle", [30, -30])
def test_a_strongly_rolled_head_comes_out_with_level_eyes(detector: FaceDetector, faces_dir: Path, angle: int) -> None:
    image = np.asarray(Image.fromarray(load(faces_dir, JOHN)).rotate(angle, resample=Image.Resampling.BILINEAR))
    face = face_of(detector, image)
    assert abs(estimate_pose(face).roll) > 20
    crop = align_face(image, face)
    # Look at the crop with MTCNN again (upscaled: 160 px is near its minimum face size here).
    again = face_of(detector, np.asarray(Image.fromarray(crop).resize((320, 320), Image.Resampling.BILINEAR)))
    assert abs(estimate_pose(again).roll) < 5
    unlevelled = align_face(image, face, AlignConfig(level_eyes=False))
    again = face_of(detector, np.asarray(Image.fromarray(unlevelled).resize((320, 320), Image.Resampling.BILINEAR)))
    assert abs(estimate_pose(again).roll) > 20


def test_a_face_at_the_edge_still_gives_a_full_crop(detector: FaceDetector, faces_dir: Path) -> None:
    image = load(faces_dir, "photos/Tom_Cruise_avp_2014_4.jpg")
    face = face_of(detector, image)
    edge = image[:, int(face.center[0] - face.width * 0.2) :].copy()
    crop = align_face(edge, face_of(detector, edge))
    assert crop.shape == (160, 160, 3)
    assert crop.std() > 20  # a picture, not a blank


def test_a_greyscale_array_is_accepted(detector: FaceDetector, faces_dir: Path) -> None:
    grey = np.asarray(Image.open(faces_dir / "yale" / "subject03" / "normal.png"))
    crop = align_face(grey, face_of(detector, grey))
    assert crop.shape == (160, 160, 3)


def test_a_margin_as_big_as_the_image_is_refused(detector: FaceDetector, faces_dir: Path) -> None:
    image = load(faces_dir, JOHN)
    with pytest.raises(ValueError):
        align_face(image, face_of(detector, image), AlignConfig(margin=160))


def test_the_measured_margin_separates_the_johns(detector: FaceDetector, faces_dir: Path, embedder) -> None:
    """With the default margin every genuine pair of 4 photos of each John scores above every impostor
    pair; the full measurement is beside AlignConfig.margin (pooled VR@FAR1e-3 0.978 at 0 -> 0.993)."""
    paths = [p for folder in sorted((faces_dir / "johns").iterdir()) for p in sorted(folder.glob("*.jpg"))[:4]]
    labels = np.array([p.parent.name for p in paths])
    images = [decode_image(p.read_bytes()) for p in paths]
    faces = [face_of(detector, image) for image in images]
    for margin in (0, AlignConfig().margin):
        crops = np.stack([align_face(i, f, AlignConfig(margin=margin)) for i, f in zip(images, faces)])
        vectors = embedder.embed(crops)
        scores = vectors @ vectors.T
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~np.eye(len(paths), dtype=bool)
        genuine, impostor = scores[same & off_diagonal], scores[~same]
        assert genuine.mean() > impostor.mean() + 0.5, margin
        if margin == AlignConfig().margin:
            assert genuine.min() > impostor.max()
