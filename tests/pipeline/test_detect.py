"""facelogin.pipeline.detect: MTCNN on real photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelogin.pipeline import types
from facelogin.pipeline.decode import LIVE_FORMATS, decode_image
from facelogin.pipeline.detect import DetectorConfig, FaceDetector

SINGLE_PHOTOS = ["angelina_jolie.jpg", "kate_siegel.jpg", "paul_rudd.jpg", "shea_whigham.jpg", "Tom_Cruise_avp_2014_4.jpg"]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    import torch

    # Two OpenMP threads on two shared cores ran MTCNN 4-40x slower than one when other processes were
    # busy (measured: 160 ms vs 0.6-7 s per portrait); one thread per process is the deployment setting.
    torch.set_num_threads(1)
    return FaceDetector()


def photo(faces_dir: Path, name: str, max_side: int | None = None) -> np.ndarray:
    return decode_image((faces_dir / "photos" / name).read_bytes(), max_side=max_side)


def assert_inside(face: types.Face, size: tuple[int, int]) -> None:
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]


@pytest.mark.parametrize("name", SINGLE_PHOTOS)
def test_it_finds_the_one_face_in_each_portrait(detector: FaceDetector, faces_dir: Path, name: str) -> None:
    image = photo(faces_dir, name)
    detection = detector.detect(image)
    assert detection.count == 1
    face = detection.largest
    assert face is not None and face.probability > 0.95
    assert detection.image_size == (image.shape[1], image.shape[0])
    assert_inside(face, detection.image_size)
    # The eyes lie in the upper half of the box, the mouth in the lower half, left eye left of right.
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    x1, y1, x2, y2 = face.box
    assert x1 < lx < rx < x2 and x1 < mlx < mrx < x2
    assert y1 < ly < ny < mly < y2 and ry < (y1 + y2) / 2 < mry


def test_it_finds_the_six_faces_of_multiface_largest_first(detector: FaceDetector, faces_dir: Path) -> None:
    detection = detector.detect(photo(faces_dir, "multiface.jpg"))
    assert detection.count == 6
    areas = [face.area for face in detection.faces]
    assert areas == sorted(areas, reverse=True)
    assert detection.largest is detection.faces[0]


def test_it_finds_many_faces_in_the_group_photo(detector: FaceDetector, faces_dir: Path) -> None:
    detection = detector.detect(photo(faces_dir, "group_bald_guys.jpg"))
    assert detection.count >= 15  # 24 measured; a group, not one or two
    for face in detection.faces:
        assert_inside(face, detection.image_size)


def test_it_finds_no_face_among_dogs(detector: FaceDetector, faces_dir: Path) -> None:
    detection = detector.detect(photo(faces_dir, "noface_dogs.jpg"))
    assert detection.count == 0 and detection.largest is None


def test_boxes_come_back_in_the_coordinates_of_the_given_image(detector: FaceDetector, faces_dir: Path) -> None:
    full = photo(faces_dir, "paul_rudd.jpg")  # 1638x2048: detected on a 512x640 copy
    small = photo(faces_dir, "paul_rudd.jpg", max_side=640)
    big_face = detector.detect(full).largest
    small_face = detector.detect(small).largest
    assert big_face is not None and small_face is not None
    scale = full.shape[0] / small.shape[0]
    assert np.allclose(np.array(big_face.box), np.array(small_face.box) * scale, atol=0.02 * big_face.width)
    assert np.allclose(np.array(big_face.landmarks), np.array(small_face.landmarks) * scale, atol=0.02 * big_face.width)


def test_without_max_side_it_detects_at_full_size(faces_dir: Path) -> None:
    image = photo(faces_dir, "Tom_Cruise_avp_2014_4.jpg")
    full = FaceDetector(DetectorConfig(max_side=None, min_face_size=80)).detect(image)
    assert full.count == 1


def test_it_accepts_a_greyscale_array(detector: FaceDetector, faces_dir: Path) -> None:
    grey = np.asarray(Image.open(faces_dir / "yale" / "subject05" / "normal.png"))
    assert grey.ndim == 2
    assert detector.detect(grey).count == 1


def test_an_orl_face_is_found(detector: FaceDetector, faces_dir: Path) -> None:
    image = decode_image((faces_dir / "orl" / "s7" / "3.pgm").read_bytes(), formats=(*LIVE_FORMATS, "PPM"))
    assert detector.detect(image).count == 1


@pytest.mark.parametrize("shape", [(1, 1, 3), (12, 12, 3), (39, 300, 3), (300, 20, 3), (0, 0, 3)])
def test_tiny_images_give_an_empty_detection_instead_of_mtcnns_value_error(detector: FaceDetector, shape: tuple[int, int, int]) -> None:
    detection = detector.detect(np.full(shape, 120, dtype=np.uint8))
    assert detection.count == 0
    assert detection.image_size == (shape[1], shape[0])


def test_an_mtcnn_failure_on_odd_input_is_no_face(detector: FaceDetector, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def pnet(self, *args: object) -> None:
            raise RuntimeError("shape mismatch deep inside the pyramid")

    monkeypatch.setattr(detector, "_mtcnn", Broken())
    assert detector.detect(np.full((100, 100, 3), 120, dtype=np.uint8)).count == 0


def test_a_face_cut_by_the_frame_edge_is_clipped_to_the_image(detector: FaceDetector, faces_dir: Path) -> None:
    image = photo(faces_dir, "Tom_Cruise_avp_2014_4.jpg")
    face = detector.detect(image).largest
    assert face is not None
    cut = image[:, int(face.center[0] - face.width * 0.2) :]  # the left ~30 % of the face is gone
    detection = detector.detect(cut)
    assert detection.count >= 1
    for found in detection.faces:
        assert_inside(found, detection.image_size)
    assert detection.largest is not None and detection.largest.box[0] == 0.0


def test_the_model_loads_once_when_threads_race_for_it(faces_dir: Path) -> None:
    detector = FaceDetector()
    image = decode_image(next((faces_dir / "johns").glob("*/*.jpg")).read_bytes())
    models: list[object] = []
    results: list[types.Detection] = []
    barrier = threading.Barrier(3)

    def work() -> None:
        barrier.wait()
        results.append(detector.detect(image))
        models.append(detector._mtcnn)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(model) for model in models}) == 1
    assert [r.count for r in results] == [1, 1, 1]
    assert results[0].faces[0].box == pytest.approx(results[1].faces[0].box, abs=1e-3)


def test_no_model_is_built_until_first_use() -> None:
    assert FaceDetector()._mtcnn is None


def test_a_smaller_detection_copy_finds_the_same_face_in_a_webcam_frame(detector: FaceDetector, faces_dir: Path) -> None:
    from tests.faces import webcam_frame

    frame = decode_image(webcam_frame(faces_dir / "photos" / "paul_rudd.jpg", face_height=220), formats=LIVE_FORMATS)
    full = detector.detect(frame)
    small = detector.detect(frame, max_side=320)
    assert full.count == small.count == 1 and small.image_size == (640, 480)  # boxes in the frame's pixels
    np.testing.assert_allclose(small.largest.box, full.largest.box, atol=8)
    np.testing.assert_allclose(small.largest.landmarks, full.largest.landmarks, atol=6)
    # Never a larger copy than configured: 2000 asks nothing more than the default 640.
    np.testing.assert_allclose(detector.detect(frame, max_side=2000).largest.box, full.largest.box, atol=1e-3)


# --- batches -------------------------------------------------------------------------------------
def webcam_frame(faces_dir: Path, name: str, shift: int = 0) -> np.ndarray:
    """A 320x240 frame like a login frame at the detection size, the portrait pasted ``shift`` px right."""
    canvas = Image.new("RGB", (320, 240), (90, 90, 90))
    face = Image.fromarray(photo(faces_dir, name)).copy()
    face.thumbnail((200, 200))
    canvas.paste(face, (60 + shift, 20))
    return np.asarray(canvas)


def same_detection(a: types.Detection, b: types.Detection) -> bool:
    if a.count != b.count or a.image_size != b.image_size:
        return False
    return all(
        np.allclose(fa.box, fb.box, atol=0.01) and np.allclose(fa.landmarks, fb.landmarks, atol=0.01)
        for fa, fb in zip(a.faces, b.faces)
    )


def test_a_batch_finds_what_each_image_alone_finds(detector: FaceDetector, faces_dir: Path) -> None:
    images = [webcam_frame(faces_dir, name, shift=i * 3) for i, name in enumerate(SINGLE_PHOTOS)]
    images += [
        np.full((240, 320, 3), 128, dtype=np.uint8),  # same size, no face
        photo(faces_dir, "multiface.jpg"),  # another size: detected on its own
        np.zeros((20, 30, 3), dtype=np.uint8),  # smaller than the smallest face
    ]
    batched = detector.detect_batch(images)
    assert [d.count for d in batched] == [1, 1, 1, 1, 1, 0, 6, 0]
    for image, detection in zip(images, batched, strict=True):
        assert same_detection(detection, detector.detect(image))


def test_a_batch_mtcnn_cannot_take_at_once_is_detected_one_by_one(faces_dir: Path) -> None:
    class FailingOnBatches(FaceDetector):
        def _run_mtcnn(self, small):
            return None if isinstance(small, list) else super()._run_mtcnn(small)

    images = [webcam_frame(faces_dir, name) for name in SINGLE_PHOTOS[:3]]
    assert [d.count for d in FailingOnBatches().detect_batch(images)] == [1, 1, 1]


def test_the_nets_run_channels_last(detector: FaceDetector) -> None:
    import torch

    detector.load()
    conv = detector._model().onet.conv1.weight  # channels-last max-pool is ~10x faster here (module doc)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
