"""The one bridge from Django settings to pipeline objects, held once per process.

``engine()`` builds the face analyser (MTCNN + FaceNet) the first time it is needed and keeps it;
``Engine.current_model()`` follows the active classifier version in the database, so every daphne
process picks up a retrain or a roll-back within ``FACELOGIN_MODEL_REFRESH_SECONDS``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings

from facelogin.pipeline.batching import FrameBatcher
from facelogin.pipeline.errors import ModelUnavailable

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_engine: Engine | None = None


def face_settings() -> dict:
    return settings.FACELOGIN


def model_name() -> str:
    return face_settings()["MODEL"]


def prepare_embedding_weights(model: str | None = None, path: str | Path | None = None) -> Path:
    """Verified weights for ``model`` (default: FACELOGIN_MODEL / FACELOGIN_MODEL_PATH)."""
    from facelogin.pipeline.weights import prepare_weights

    config = face_settings()
    if model is None:
        model, path = config["MODEL"], config["MODEL_PATH"]
    return prepare_weights(model, Path(config["MODEL_DIR"]), path=Path(path) if path else None)


def analyzer_config():
    from facelogin.pipeline.analyze import AnalyzerConfig
    from facelogin.pipeline.decode import DecodeLimits

    config = face_settings()
    return AnalyzerConfig(
        decode=DecodeLimits(max_bytes=config["MAX_UPLOAD_BYTES"], max_pixels=config["MAX_PIXELS"]),
        login_decode=DecodeLimits.login_frame(max_bytes=config["MAX_FRAME_BYTES"], max_side=config["MAX_FRAME_SIDE"]),
        login_detect_side=config["LOGIN_DETECT_SIDE"] or None,
        # Liveness checks that every face frame of the track is the student recognised (``same_student``):
        # a frame it could not embed would be one nobody checked. bench.attacks (i) got in through those:
        # the attacker's own head, turning under the lowered photo, was small and blurred, never embedded.
        embed_every_login_face=config["LIVENESS"],
    )


def face_mesher():
    """The dense-landmark model the liveness check needs (None with liveness off)."""
    from facelogin.pipeline.mesh import FaceMesher, MeshConfig

    config = face_settings()
    if not config["LIVENESS"]:
        return None
    path = config["MESH_MODEL_PATH"]
    return FaceMesher(MeshConfig(model_path=Path(path) if path else None, threads=config["TORCH_THREADS"]))


def pad_detector():
    """The plugged-in presentation-attack detector (FACELOGIN_PAD_DETECTOR="module:factory"), or None."""
    import importlib

    spec = face_settings()["PAD_DETECTOR"]
    if not spec:
        return None
    module_name, _, factory_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name or "detector")
        detector = factory()
    except Exception as exc:  # noqa: BLE001 - an operator's typo must say what is wrong, then stop face sign-in
        raise ModelUnavailable(f"FACELOGIN_PAD_DETECTOR={spec!r} cannot be loaded: {exc}", reason="pad_missing") from exc
    from facelogin.pipeline.pad import PresentationAttackDetector

    if not isinstance(detector, PresentationAttackDetector):
        raise ModelUnavailable(f"FACELOGIN_PAD_DETECTOR={spec!r} has no score(image, face) method", reason="pad_invalid")
    return detector


def liveness_config():
    """The challenge's rules: the pipeline's measured defaults, with the deployment's switches."""
    from dataclasses import replace

    from facelogin.pipeline.liveness import LivenessConfig

    config = LivenessConfig()
    if not face_settings()["LIVENESS_FLASH"]:
        config = replace(config, flash=None)
    return config


class Engine:
    """Per-process models: the analyser, the frame batcher and the active classifier."""

    def __init__(self) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        from facelogin.pipeline.analyze import FaceAnalyzer
        from facelogin.pipeline.embed import get_embedder

        config = face_settings()
        # Process-wide and deliberate: MTCNN runs on torch whatever the embedder. At torch's default (a
        # thread per core) a 320 px detection measured 0.3-1.1 s instead of 42-52 ms on a busy 2-core
        # machine (bench.latency); scale with processes, not threads.
        torch.set_num_threads(config["TORCH_THREADS"])
        # numpy's BLAS too: the gallery search at 30,000 students took 12 ms on two threads against
        # 7.4 ms on one, in a process whose other thread is busy with the next frame (bench.gallery).
        threadpool_limits(limits=config["TORCH_THREADS"])
        self.model_name = config["MODEL"]
        embedder = get_embedder(
            prepare_embedding_weights(), threads=config["TORCH_THREADS"], backend=config["EMBEDDER"], sface_runtime=config["SFACE_RUNTIME"]
        )
        self.analyzer = FaceAnalyzer(analyzer_config(), embedder, mesher=face_mesher(), pad=pad_detector())
        self.batcher = FrameBatcher(self.recognise_batch, threads=config["RECOGNITION_THREADS"], max_waiting=config["FRAME_QUEUE"])
        self._model = None
        self._version_id: int | None = None
        self._checked_at = float("-inf")
        self._model_lock = threading.Lock()

    def warm_up(self) -> None:
        self.analyzer.warm_up()

    def recognise_batch(self, frames):
        """The batcher's step, off the event loop: analyse the frames, then vote them all at once against
        the classifier the sockets last loaded (never a database trip here: a refresh is theirs). In
        verify mode each socket compares its frames with its own claimed student instead."""
        from facelogin.pipeline.decide import recognise_batch

        model = self._model if face_settings()["MODE"] != "verify" else None
        return recognise_batch(model, self.analyzer.analyze_batch(frames, purpose="login"))

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < face_settings()["MODEL_REFRESH_SECONDS"]

    def current_model(self):
        """The active TrainedModel, or None when none is trained for the current FaceNet model."""
        if self._fresh():
            return self._model
        with self._model_lock:
            self._refresh()
        return self._model

    async def current_model_async(self):
        if self._fresh():
            return self._model
        return await sync_to_async(self.current_model, thread_sensitive=False)()

    def forget_model(self) -> None:
        self._checked_at = float("-inf")

    def loaded_model(self):
        """(version id, TrainedModel) this process decides with now, without a database trip; (None, None)."""
        return self._version_id, self._model

    def _refresh(self) -> None:
        from django.db import close_old_connections

        from facelogin.services.training import active_version_id, load_trained_model

        close_old_connections()
        version_id = active_version_id(model_name=self.model_name)
        if version_id != self._version_id:
            self._model = load_trained_model(version_id) if version_id else None
            self._version_id = version_id
            logger.info("face classifier version now %s", version_id)
        self._checked_at = time.monotonic()


def engine() -> Engine:
    """The process's engine. Raises ModelUnavailable when the weights cannot be loaded."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = Engine()
    return _engine


async def engine_async() -> Engine | None:
    try:
        return _engine or await sync_to_async(engine, thread_sensitive=False)()
    except ModelUnavailable:
        logger.exception("face model unavailable")
        return None


def loaded_engine() -> Engine | None:
    """The engine if this process has built it (never builds one: for monitoring)."""
    return _engine


_ready = threading.Event()


def engine_ready() -> bool:
    """True once this process has loaded and warmed its models (reported by /healthz/)."""
    return _ready.is_set()


def warm_up_in_background() -> None:
    def run() -> None:
        try:
            engine().warm_up()
            # torch, Django and the models leave ~400,000 long-lived objects; every full collection walked
            # them all (~200 ms with the process's sockets waiting, seen in daphne under bench.load).
            # Frozen, they are never walked again.
            gc.collect()
            gc.freeze()
            _ready.set()
            logger.info("face engine ready")
        except Exception:  # noqa: BLE001 - reported; sign-in reports "unavailable" on its own
            logger.exception("face engine warm-up failed")

    threading.Thread(target=run, name="face-engine-warm-up", daemon=True).start()


# --- decision (the pipeline's decide module, seen from the services) ---------------------------
def new_decider(model, *, claim: str | None = None):
    """A per-attempt decider: the model's decision rules, with this deployment's frame budget and its way
    of adding frames up (FACELOGIN_FUSION); in verify mode, for the ``claim``ed student only.

    The deadline is enforced by the consumer (it also covers a silent client), not by the decider.
    """
    from dataclasses import replace

    from facelogin.pipeline.decide import AttemptDecider

    config = face_settings()
    min_frames = config["MIN_FRAMES"]
    rules = replace(
        model.config,
        min_frames=min_frames,
        max_frames=max(min_frames, config["MAX_FRAMES"]),
        deadline_s=None,
        fusion=config["FUSION"],
    )
    verify = (claim, model.calibration.verification()[0]) if claim is not None else None
    return AttemptDecider(rules, model=model, claim=verify)


def same_student(model, analysis, label: str) -> bool:
    """Is this frame's face still the student ``label``, within the liveness identity margin below the
    threshold? A turned head scores lower than a frontal one; another person far lower. A frame without
    a face has no one to judge (the liveness track judges the gap); a face that was not embedded fails:
    it could be anyone (with liveness on, the analyser embeds every face it finds)."""
    from facelogin.pipeline.decide import similarity_to

    if analysis.face is None:
        return True
    if analysis.embedding is None:
        return False
    floor = model.threshold - face_settings()["LIVENESS_IDENTITY_MARGIN"]
    return similarity_to(model, analysis.embedding, label) >= floor


def conflicts_with(vote, label: str) -> bool:
    """Does this frame point confidently at a student other than ``label``?"""
    pointed = set(vote.confident) | ({vote.label} if vote.label else set())
    return bool(pointed - {label})


def frame_vote(model, analysis, *, claim: str | None = None):
    """The frame's vote: against every student (identify), or only the claimed one (verify)."""
    from facelogin.pipeline.decide import vote_analysis, vote_claim

    if claim is None:
        return vote_analysis(model, analysis)
    return vote_claim(model, analysis, claim, model.calibration.verification()[0])  # ~0.1 ms


def usable_frames_progress(usable_frames: int) -> float:
    """The page's progress bar for identity: frames with a usable face, out of those a decision needs.
    Never from the votes, which would tell, frame by frame, whether the face matches someone."""
    return min(1.0, usable_frames / max(1, face_settings()["MIN_FRAMES"]))


def vote_scores(vote) -> dict:
    """Scores worth keeping with a sign-in or an audit row (never the embedding itself)."""

    def finite(value: float) -> float | None:
        return round(float(value), 4) if value not in (float("inf"), float("-inf")) else None

    return {
        "similarity": finite(vote.similarity),
        "best_similarity": finite(vote.best_similarity),
        # The runner-up is exact when it could change the decision (within the margin of the best);
        # otherwise it is the best other student the search examined, an underestimate.
        "second_similarity": finite(vote.second_similarity),
        "threshold": finite(vote.threshold),
        "probability": round(float(vote.probability), 4),
        "reason": vote.reason,
    }
