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


def test_padding_outside_keeps_the_face_where_the_image_would_stretch_it(detector: FaceDetector, faces_dir: Path) -> None:
    """``pad_outside`` (measured, off by default): a box running off a tight crop keeps its geometry: the
    part outside the photo is the pad colour, and the inside is the photo unstretched."""
    image = load(faces_dir, JOHN)  # a 150 px face chip: box + margin leave the photo
    face = face_of(detector, image)
    padded = align_face(image, face, AlignConfig(pad_outside=True, pad_colour=(0, 255, 0)))
    clipped = align_face(image, face)
    x1, y1, x2, y2 = face.box
    assert x1 - 10 < 0 or y1 - 10 < 0 or x2 + 10 > image.shape[1] or y2 + 10 > image.shape[0]
    green = (padded[..., 0] < 40) & (padded[..., 1] > 215) & (padded[..., 2] < 40)
    assert green.any() and not green[60:100, 60:100].any()
    assert not np.array_equal(padded, clipped)
    # Inside the image nothing changes when nothing runs off it.
    big = np.pad(image, ((100, 100), (100, 100), (0, 0)), mode="edge")
    inner = face_of(detector, big)
    assert np.array_equal(align_face(big, inner, AlignConfig(pad_outside=True)), align_face(big, inner))


def test_light_normalisation_brings_dim_and_bright_crops_to_one_level(detector: FaceDetector, faces_dir: Path) -> None:
    image = load(faces_dir, JOHN)
    face = face_of(detector, image)
    config = AlignConfig(contrast_std=55.0)
    dim = (image.astype(np.float32) * 0.4).astype(np.uint8)
    levels = []
    for picture in (image, dim):
        crop = align_face(picture, face, config).astype(np.float32)
        centre = crop[40:140, 32:128].mean(axis=2)
        levels.append((centre.mean(), centre.std()))
    (bright_mean, bright_std), (dim_mean, dim_std) = levels
    assert abs(bright_mean - dim_mean) < 2 and abs(bright_std - dim_std) < 2
    assert abs(bright_mean - 128) < 8 and 40 < bright_std < 60  # highlights clip: a little under 55
    assert align_face(dim, face).mean() < 0.6 * align_face(image, face).mean()  # off by default
