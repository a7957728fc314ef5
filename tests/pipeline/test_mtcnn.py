"""facelogin.pipeline.mtcnn: MTCNN's stages with the resampling done at once give facenet-pytorch's own
detections, bit for bit, on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelogin.pipeline.decode import decode_image
from facelogin.pipeline.detect import DetectorConfig, resize_long_side
from facelogin.pipeline.mtcnn import area_resample, detect_faces, integral_images
from tests.faces import webcam_frame

CONFIG = DetectorConfig()


@pytest.fixture(scope="module")
def mtcnn():
    import torch
    from facelogin.pipeline.detect import FaceDetector

    torch.set_num_threads(1)
    return FaceDetector(CONFIG)._model()


def torch_area(image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """facenet-pytorch's crop and resample of one (H, W, 3) image, scaled for the nets, as (rows, cols, 3)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import imresample

    y0, y1, x0, x1 = box
    tensor = torch.as_tensor(image[None].copy()).permute(0, 3, 1, 2).float()[:, :, y0:y1, x0:x1]
    return ((imresample(tensor, size) - 127.5) * 0.0078125).permute(0, 2, 3, 1)[0].numpy()


def test_area_resampling_is_torchs_bit_for_bit_shrinking_and_enlarging() -> None:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (2, 150, 211, 3), dtype=np.uint8)
    sums = integral_images(images)
    boxes, which, expected = [], [], []
    for k in range(60):
        y0, x0 = rng.integers(0, 100, 2)
        y1, x1 = y0 + rng.integers(1, 50), x0 + rng.integers(1, 111)  # down to 1 px: enlarged to 24
        boxes.append((y0, y1, x0, x1))
        which.append(k % 2)
        expected.append(torch_area(images[k % 2], (y0, y1, x0, x1), (24, 24)))
    y0, y1, x0, x1 = (np.array(v) for v in zip(*boxes))
    got = area_resample(sums, np.array(which), y0, y1, x0, x1, (24, 24))
    assert np.array_equal(got, np.stack(expected))  # the division's order matters: sum / (rows * cols) fails
    whole = area_resample(sums, np.array([1]), np.array([0]), np.array([150]), np.array([0]), np.array([211]), (45, 64))
    assert np.array_equal(whole[0], torch_area(images[1], (0, 150, 0, 211), (45, 64)))


def images_to_detect(faces_dir: Path) -> list[np.ndarray]:
    photos = sorted((faces_dir / "photos").glob("*.jpg"))
    images = [resize_long_side(decode_image(p.read_bytes()), 640)[0] for p in photos]
    for archive in ("orl", "yale"):  # greyscale sets Pillow reads (not formats the portal accepts)
        files = [p for p in sorted((faces_dir / archive).rglob("*")) if p.suffix in (".pgm", ".png")][:100:10]
        images += [np.asarray(Image.open(p).convert("RGB")) for p in files]
    images += [decode_image(webcam_frame(p, size=(320, 240), face_height=h, shift=h)) for p, h in zip(photos, range(60, 240, 25))]
    return images


def assert_same(ours: tuple, theirs: tuple) -> None:
    if theirs[0] is None:
        assert ours[0] is None
        return
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))


def test_detections_are_facenet_pytorchs_bit_for_bit_on_real_faces(mtcnn, faces_dir: Path) -> None:
    import torch

    faces = 0
    for image in images_to_detect(faces_dir):
        with torch.inference_mode():
            theirs = mtcnn.detect(image, landmarks=True)
            ours = detect_faces(mtcnn, image[None], CONFIG.min_face_size, CONFIG.thresholds, CONFIG.factor)[0]
        assert_same(ours, theirs)
        faces += 0 if theirs[0] is None else len(theirs[0])
    assert faces >= 30  # group photos, portraits, ORL, Yale and webcam frames, not only empty results


def test_a_batch_of_frames_is_facenet_pytorchs_batch_bit_for_bit(mtcnn, faces_dir: Path) -> None:
    import torch

    frames = [decode_image(webcam_frame(p, size=(320, 240), face_height=170, shift=i)) for i, p in enumerate(sorted((faces_dir / "photos").glob("*.jpg")))]
    with torch.inference_mode():
        theirs = mtcnn.detect(frames, landmarks=True)
        ours = detect_faces(mtcnn, np.stack(frames), CONFIG.min_face_size, CONFIG.thresholds, CONFIG.factor)
    assert len(ours) == len(frames)
    for index, found in enumerate(ours):
        assert_same(found, tuple(part[index] for part in theirs))


def test_a_candidate_box_wholly_outside_the_image_is_dropped_not_cropped() -> None:
    """facenet-pytorch skips such a box's crop and then fails on the shapes; here it is dropped."""
    import torch

    from facelogin.pipeline.mtcnn import _refine

    seen = []

    def net(batch):  # a stand-in for R-Net: every crop scores 0.9, no box correction
        seen.append(tuple(batch.shape))
        k = batch.shape[0]
        return torch.zeros(k, 4), torch.tensor([[0.1, 0.9]] * k)

    image = np.full((1, 100, 120, 3), 90, dtype=np.uint8)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0, 0.9], [200.0, 10.0, 240.0, 50.0, 0.9]])  # the second beyond x = 120
    kept, image_inds, corrections, _, _ = _refine(net, integral_images(image), boxes, torch.zeros(2, dtype=torch.int64), (120, 100), 24, 1, 0.7)
    assert seen == [(1, 3, 24, 24)]  # only the box inside the image was cropped
    assert kept.tolist() == [[10.0, 10.0, 50.0, 50.0, 0.8999999761581421]] and image_inds.tolist() == [0] and corrections.shape == (1, 4)
