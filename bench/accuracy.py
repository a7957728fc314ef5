"""Accuracy benchmark: the live sign-in pipeline and decision, on labelled face folders.

    python -m bench.accuracy --dataset ../shared/faces/orl --dataset ../shared/faces/yale \\
        --dataset ../shared/faces/johns --enroll 5 --unknown-fraction 0.2

Every image goes through the code the login runs: ``FaceAnalyzer.analyze_bytes`` (decode → detect →
quality → align → embed), then ``decide.vote_analysis`` and an ``AttemptDecider`` per attempt. The
classifier version is made by ``decide.train_model`` on the enrolled images only, exactly as the app
trains it, so the threshold is calibrated on the enrolled gallery and never sees a test attempt.

Two protocols, per seed:
* each ``--dataset DIR`` holds ``DIR/<identity>/<images>``; a fraction ``--unknown-fraction`` of the
  identities of every dataset (drawn by the seed) is never enrolled, and every ``--unknown DIR`` adds
  identities that never are;
* an enrolled identity enrols its first ``--enroll`` images (natural file order; images with no face or
  poor quality are refused, as the enrolment page refuses them); its other images are held out;
* many photos (the stress test): genuine attempts are up to ``--genuine-per-identity`` distinct random
  combinations of up to ``--frames`` of an enrolled identity's held-out images (each a different photo;
  ``--webcam-face-height`` puts each on a 640x480 webcam frame); impostor attempts are distinct ordered
  ``--frames``-sequences of never-enrolled identities' images, at least ``--impostor-attempts`` a seed;
* live session (unless ``--no-live``): every held-out photo of an enrolled identity whose head faces the
  camera becomes ``--live-sessions`` webcam sessions (``bench.webcam``: the page's 640x480 JPEG frames at
  10 frames/s, the face 100-250 px tall, dim / normal / bright light, noise, blur, sway, roll and scale,
  drawn per session and the same in every seed); a genuine attempt is a session's first
  ``--live-frames`` frames in order. Every photo of a never-enrolled identity makes sessions too; an
  impostor attempt is ``--live-frames`` of a session's ``--live-pool`` frames, in order, some dropped,
  at least ``--live-impostor-attempts`` a seed (so attempts share sessions: both counts are reported);
* an attempt is accepted or rejected by the decider after its frames (the client stops sending).
  Rows per dataset, and for the live sessions per light and face size, find where attempts are lost;
  the worst seed is shown beside the pooled rate.

Embeddings are cached per image under ``data/bench-cache`` (git-ignored), keyed by the file's sha256
(a live frame: by its session's description), the face model and its weights' hash and the analyzer
configuration, so reruns skip the CNNs. Defaults are the live login's (FACELOGIN_MODEL's default,
SFace; ``--model casia-webface`` for FaceNet on ONNX Runtime; login frames detected at 320 px, one
thread); ``--analyzer FIELD=VALUE`` changes one AnalyzerConfig field for a run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from facelogin.pipeline import types
from facelogin.pipeline.classify import CLASSIFIER_KINDS
from facelogin.pipeline.decide import (
    FUSIONS,
    AttemptDecider,
    THESIS_PROBABILITY,
    DecisionConfig,
    FrameVote,
    ThesisRule,
    TrainedModel,
    decide_attempt,
    frame_gate,
    train_model,
    vote_analyses,
    vote_analysis,
    vote_frames,
    with_config,
)
from facelogin.pipeline.weights import DEFAULT_MODEL, MODELS

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "bench" / "results" / "accuracy.json"
DEFAULT_CACHE = REPO / "data" / "bench-cache"
DEFAULT_MODELS = REPO / "data" / "models"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
DEFAULT_CLASSIFIER = "centroid"
CACHE_VERSION = 2  # 2: SFace vectors spread over the 512 columns (embed.spread), no longer zero-padded
# --sweep: decision settings tried on the default classifier's model (same calibration, same votes' scores).
SWEEP = [
    (m, margin, conflict) for m in (1, 2, 3, 4, 5) for margin in (0.0, 0.05, 0.1) for conflict in ("confident", "votes")
]


# --- images and identities -------------------------------------------------------------------------


def natural_key(name: str) -> list[Any]:
    # ORL's 1.pgm … 10.pgm: "first K images" must mean 1..K, not 1, 10, 2, …
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Identity:
    name: str  # "<dataset>/<folder>": unique across datasets
    dataset: str
    images: tuple[Path, ...]
    always_unknown: bool = False


def find_identities(root: Path, *, always_unknown: bool = False) -> list[Identity]:
    """``root/<identity>/<images>``; loose images directly in ``root`` are one identity each."""
    root = root.resolve()
    if not root.is_dir():
        raise SystemExit(f"not a directory: {root}")

    def images_in(folder: Path) -> tuple[Path, ...]:
        found = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return tuple(sorted(found, key=lambda p: natural_key(p.name)))

    found = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        images = images_in(folder)
        if images:
            found.append(Identity(f"{root.name}/{folder.name}", root.name, images, always_unknown))
    for image in images_in(root):
        found.append(Identity(f"{root.name}/{image.stem}", root.name, (image,), always_unknown))
    if not found:
        raise SystemExit(f"no images under {root}")
    return found


# --- analysis with a cache -----------------------------------------------------------------------


@dataclass
class Frame:
    """What the bench keeps of one image's analysis (a FrameAnalysis minus the crop)."""

    path: Path
    analysis: types.FrameAnalysis | None  # None: the image could not be decoded
    error: str | None = None

    @property
    def embedding(self) -> np.ndarray | None:
        return None if self.analysis is None else self.analysis.embedding

    @property
    def has_face(self) -> bool:
        return self.analysis is not None and self.analysis.face is not None

    @property
    def usable(self) -> bool:
        """What may enrol, and what may vote: the live gate (one face, an embedding, good quality)."""
        return self.analysis is not None and frame_gate(self.analysis) is None


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def analysis_to_json(a: types.FrameAnalysis) -> dict[str, Any]:
    d = _plain(replace(a, crop=None, embedding=None))
    d.pop("crop", None)
    d.pop("embedding", None)
    return d


def analysis_from_json(d: dict[str, Any], embedding: np.ndarray | None) -> types.FrameAnalysis:
    def face(f: dict[str, Any] | None) -> types.Face | None:
        if f is None:
            return None
        return types.Face(
            box=tuple(f["box"]), probability=f["probability"], landmarks=tuple(tuple(p) for p in f["landmarks"])
        )

    det = d["detection"]
    detection = types.Detection(faces=tuple(face(f) for f in det["faces"]), image_size=tuple(det["image_size"]))
    q = d.get("quality")
    quality = None
    if q is not None:
        quality = types.QualityReport(
            face_px=q["face_px"],
            brightness=q["brightness"],
            sharpness=q["sharpness"],
            pose=types.Pose(**q["pose"]),
            issues=tuple(types.QualityIssue(**i) for i in q["issues"]),
        )
    return types.FrameAnalysis(
        detection=detection,
        face=face(d.get("face")),
        quality=quality,
        embedding=embedding,
        timings_ms=dict(d.get("timings_ms") or {}),
    )


# Benchmark folders hold PGM (ORL; Pillow calls it PPM), GIF, BMP and TIFF as well as what browsers send.
BENCH_FORMATS = ("JPEG", "PNG", "WEBP", "PPM", "GIF", "BMP", "TIFF")


class Analyzer:
    """The live FaceAnalyzer plus a per-image cache.

    One difference from the live configuration: poor-quality faces are embedded too
    (``embed_poor_quality``), only so the thesis baseline, which had no quality check, can count them.
    The live gate (``decide.frame_gate``) still gives those frames no vote in every other row, and a
    good frame's embedding is the same either way.
    """

    def __init__(
        self,
        *,
        model: str,
        model_dir: Path,
        cache_dir: Path | None,
        threads: int | None,
        embedder: str = "torch",
        sface_runtime: str = "torch",
        login_detect_side: int | None = None,
        webcam_face_height: int | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        from facelogin.pipeline.analyze import AnalyzerConfig, FaceAnalyzer
        from facelogin.pipeline.embed import get_embedder
        from facelogin.pipeline.weights import prepare_weights, sha256_file

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        weights = prepare_weights(model, model_dir)
        self.model_name = model
        self.config = replace(AnalyzerConfig(), embed_poor_quality=True, login_detect_side=login_detect_side, **(overrides or {}))
        # Login images as a sign-in camera sees them: the photo's face on a 640x480 JPEG frame.
        self.webcam_face_height = webcam_face_height
        if "formats" in getattr(AnalyzerConfig, "__dataclass_fields__", {}):
            self.config = replace(self.config, formats=BENCH_FORMATS)
        self.analyzer = FaceAnalyzer(self.config, get_embedder(weights, threads=threads, backend=embedder, sface_runtime=sface_runtime))
        self.cache_dir = cache_dir
        # Anything that changes an analysis changes the key: model, weights, analyzer settings.
        self.key_prefix = json.dumps(
            {
                "v": CACHE_VERSION,
                "model": model,
                "weights": sha256_file(weights),
                "config": repr(self.config),
                "formats": BENCH_FORMATS,
                "embedder": embedder,
                # Absent for OpenCV, SFace's only runtime before stop 25, so earlier caches stay valid.
                **({"sface_runtime": sface_runtime} if model == "sface" and sface_runtime != "opencv" else {}),
            },
            sort_keys=True,
        )
        self.hits = 0
        self.misses = 0

    def _key(self, data: bytes, purpose: str) -> str:
        h = hashlib.sha256(self.key_prefix.encode())
        h.update(purpose.encode())
        h.update(hashlib.sha256(data).digest())
        return h.hexdigest()

    def analyze_many(
        self, jobs: Sequence[tuple[Path, str]], *, batch: int = 8, progress: Any = None
    ) -> dict[tuple[str, str], Frame]:
        """{(path, purpose): Frame}. Cache misses go through ``analyze_batch`` (one embedder call per
        ``batch`` images: ~0.55x the per-face cost of batch 1 on these CPUs)."""
        out: dict[tuple[str, str], Frame] = {}
        todo: dict[str, list[tuple[Path, bytes, str]]] = {}
        for path, purpose in jobs:
            data = path.read_bytes()
            if purpose == "login" and self.webcam_face_height:
                from tests.faces import webcam_frame

                data = webcam_frame(path, face_height=self.webcam_face_height)
            # "source": the photo itself as a login frame, whatever --webcam-face-height says (the live
            # protocol measures its face there); it shares the cache with "login" when both are the photo.
            key = self._key(data, "login" if purpose == "source" else purpose)
            cached = self._load(key, path)
            if cached is not None:
                self.hits += 1
                out[(str(path), purpose)] = cached
                if progress is not None:
                    progress.update(1)
            else:
                todo.setdefault(purpose, []).append((path, data, key))
        for purpose, items in todo.items():
            for start in range(0, len(items), batch):
                chunk = items[start : start + batch]
                results = self.analyzer.analyze_batch(
                    [d for _, d, _ in chunk], purpose="login" if purpose == "source" else purpose, formats=BENCH_FORMATS
                )
                for (path, _, key), result in zip(chunk, results):
                    frame = self._frame(path, result)
                    self.misses += 1
                    self._store(key, frame)
                    out[(str(path), purpose)] = frame
                if progress is not None:
                    progress.update(len(chunk))
        return out

    @staticmethod
    def _frame(path: Path, result: Any) -> Frame:
        from facelogin.pipeline import errors

        if isinstance(result, (errors.ImageError, errors.FaceCountError)):  # enrolment refuses 0 or 2+ faces
            return Frame(path, None, result.code)
        if isinstance(result, errors.PipelineError):
            raise result  # the model is unavailable: not a property of this image
        return Frame(path, replace(result, crop=None))

    def analyze_sessions(
        self, sessions: Sequence[Session], frames: int, *, batch: int = 8, progress: Any = None
    ) -> dict[tuple[str, int], list[Frame]]:
        """{session key: its first ``frames`` frames analysed}. A frame is rendered only on a cache miss:
        its key is the session's description (photo bytes, conditions, seed, index, renderer version)."""
        out: dict[tuple[str, int], list[Frame]] = {}
        todo: list[tuple[Session, int, str]] = []
        for session in sessions:
            found: list[Frame | None] = []
            for index in range(frames):
                key = self._key(session.describe(index).encode(), "live")
                frame = self._load(key, session.photo)
                found.append(frame)
                if frame is None:
                    todo.append((session, index, key))
                else:
                    self.hits += 1
                    if progress is not None:
                        progress.update(1)
            out[session.key] = found  # type: ignore[assignment]  # misses filled below
        camera: tuple[Session, Any] | None = None
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            data = []
            for session, index, _ in chunk:
                if camera is None or camera[0] is not session:
                    camera = (session, session.camera())
                data.append(camera[1].jpeg(index))
            results = self.analyzer.analyze_batch(data, purpose="login", formats=BENCH_FORMATS)
            for (session, index, key), result in zip(chunk, results, strict=True):
                frame = self._frame(session.photo, result)
                self.misses += 1
                self._store(key, frame)
                out[session.key][index] = frame
            if progress is not None:
                progress.update(len(chunk))
        return out

    def _load(self, key: str, path: Path) -> Frame | None:
        if self.cache_dir is None:
            return None
        file = self.cache_dir / key[:2] / f"{key}.npz"
        if not file.is_file():
            return None
        try:
            with np.load(file, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                emb = z["embedding"] if meta.get("has_embedding") else None
        except (OSError, ValueError, KeyError):
            return None  # a torn or stale file: recompute
        if meta.get("error"):
            return Frame(path, None, meta["error"])
        return Frame(path, analysis_from_json(meta["analysis"], None if emb is None else emb.astype(np.float32)))

    def _store(self, key: str, frame: Frame) -> None:
        if self.cache_dir is None:
            return
        file = self.cache_dir / key[:2] / f"{key}.npz"
        file.parent.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"error": frame.error, "has_embedding": frame.embedding is not None}
        if frame.analysis is not None:
            meta["analysis"] = analysis_to_json(frame.analysis)
        emb = frame.embedding if frame.embedding is not None else np.zeros(0, np.float32)
        tmp = file.with_name(file.stem + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), embedding=emb)
        tmp.replace(file)


# --- one seed --------------------------------------------------------------------------------------


@dataclass
class Split:
    seed: int
    enrolled: list[Identity]
    unknown: list[Identity]
    enrol_frames: dict[str, list[Frame]] = field(default_factory=dict)
    login_frames: dict[str, list[Frame]] = field(default_factory=dict)  # identity -> frames, in file order


def make_split(
    identities: Sequence[Identity], *, seed: int, unknown_fraction: float
) -> tuple[list[Identity], list[Identity]]:
    rng = np.random.default_rng(seed)
    unknown: set[str] = set()
    by_dataset: dict[str, list[Identity]] = {}
    for ident in identities:
        if ident.always_unknown:
            unknown.add(ident.name)
        else:
            by_dataset.setdefault(ident.dataset, []).append(ident)
    # Stratified: every dataset loses the same fraction, so no dataset is all-known or all-unknown.
    for members in by_dataset.values():
        k = int(round(unknown_fraction * len(members)))
        if unknown_fraction > 0 and len(members) > 1:
            k = max(1, min(k, len(members) - 1))
        for i in rng.choice(len(members), size=k, replace=False):
            unknown.add(members[i].name)
    return [i for i in identities if i.name not in unknown], [i for i in identities if i.name in unknown]


def combinations(items: Sequence[int], size: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Up to ``count`` distinct random ``size``-combinations of ``items``, each in a random order."""
    size = min(size, len(items))
    if size == 0 or count <= 0:
        return []
    total = math.comb(len(items), size)
    if total <= max(count * 3, 2_000):
        pool = list(itertools.combinations(items, size))
        picks = [pool[i] for i in rng.permutation(len(pool))[:count]]
    else:
        seen: set[tuple[int, ...]] = set()
        while len(seen) < count:
            seen.add(tuple(sorted(rng.choice(items, size=size, replace=False).tolist())))
        picks = sorted(seen)
        picks = [picks[i] for i in rng.permutation(len(picks))]
    # Frames arrive in some order; the decider's early accept/conflict depends on it.
    return [tuple(rng.permutation(np.array(c)).tolist()) for c in picks]


def sequences(items: Sequence[int], size: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Up to ``count`` distinct random ordered ``size``-sequences of distinct ``items``."""
    size = min(size, len(items))
    if size == 0 or count <= 0:
        return []
    count = min(count, math.perm(len(items), size))
    if count * 3 >= math.perm(len(items), size):
        pool = list(itertools.permutations(items, size))
        return [pool[i] for i in rng.permutation(len(pool))[:count]]
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < count:
        seen[tuple(rng.choice(items, size=size, replace=False).tolist())] = None
    return list(seen)


@dataclass
class Attempts:
    genuine: list[tuple[str, tuple[int, ...]]]  # (identity, frame indices into the login frame list)
    impostor: list[tuple[str, tuple[int, ...]]]


def make_attempts(
    login: list[tuple[str, Frame]],
    enrolled: set[str],
    *,
    frames: int,
    genuine_per_identity: int,
    impostor_attempts: int,
    rng: np.random.Generator,
) -> Attempts:
    by_ident: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(login):
        by_ident.setdefault(name, []).append(i)
    genuine = [
        (name, c)
        for name, idx in by_ident.items()
        if name in enrolled
        for c in combinations(idx, frames, genuine_per_identity, rng)
    ]
    strangers = [name for name in by_ident if name not in enrolled]
    impostor: list[tuple[str, tuple[int, ...]]] = []
    if strangers:
        # Spread the quota over strangers; ones with few combinations hand their share to the rest.
        # Distinct ordered sequences: the decider's early accept and its conflict rule see the order.
        capacity = {n: math.perm(len(by_ident[n]), min(frames, len(by_ident[n]))) for n in strangers}
        quota = dict.fromkeys(strangers, 0)
        remaining = impostor_attempts
        open_ = [n for n in strangers if capacity[n] > 0]
        while remaining > 0 and open_:
            share = max(1, remaining // len(open_))
            for n in list(open_):
                add = min(share, capacity[n] - quota[n], remaining)
                quota[n] += add
                remaining -= add
                if quota[n] >= capacity[n]:
                    open_.remove(n)
                if remaining <= 0:
                    break
        for n in strangers:
            impostor += [(n, c) for c in sequences(by_ident[n], frames, quota[n], rng)]
    return Attempts(genuine, impostor)


def verification_tar(model: TrainedModel, probes: np.ndarray, truth: list[str | None], far: float = 1e-3) -> float:
    """1:1 verification on the test frames: each probe against every enrolled student's photos."""
    if not len(probes):
        return float("nan")
    S = model.gallery.similarities(probes)
    labels = model.gallery.labels
    col = {lbl: j for j, lbl in enumerate(labels)}
    own = np.array([col.get(t, -1) if t is not None else -1 for t in truth])
    mask = np.ones_like(S, dtype=bool)
    has = own >= 0
    mask[np.flatnonzero(has), own[has]] = False
    impostor = S[mask]
    genuine = S[np.flatnonzero(has), own[has]]
    if not len(impostor) or not len(genuine):
        return float("nan")
    threshold = np.quantile(impostor, 1 - far, method="higher")
    return float(np.mean(genuine > threshold))


def frame_votes(model: TrainedModel, login: list[tuple[str, Frame]]) -> list[FrameVote]:
    analysed = [i for i, (_, f) in enumerate(login) if f.analysis is not None]
    votes = [FrameVote.no_vote("bad_image")] * len(login)
    for i, v in zip(analysed, vote_analyses(model, [login[i][1].analysis for i in analysed])):
        votes[i] = v
    return votes


def run_rule(
    votes: list[FrameVote],
    attempts: Attempts,
    make_rule: Any,
    *,
    dataset_of: dict[str, str] | None = None,
    analyses: list[types.FrameAnalysis | None] | None = None,
) -> dict[str, Any]:
    """Every attempt through a fresh decider (``make_rule()``); rates, reasons and per-dataset rows."""
    outcomes = []
    for kind, group in (("genuine", attempts.genuine), ("impostor", attempts.impostor)):
        for name, idx in group:
            frames = [analyses[i] for i in idx] if analyses is not None else None
            d = decide_attempt([votes[i] for i in idx], make_rule(), frames)
            outcomes.append(
                Outcome(kind, name, (dataset_of or {}).get(name, ""), d.accepted, d.label, d.reason, d.frames)
            )
    record_decisions("photos", outcomes)
    row = outcome_rates(outcomes)
    if dataset_of:
        row["by_dataset"] = grouped_rates(outcomes, lambda o: o.dataset)
    return row


DECISIONS: list[dict[str, Any]] | None = None  # --decisions FILE: every attempt's outcome, in run order


def record_decisions(protocol: str, outcomes: Sequence[Outcome]) -> None:
    """Keep each attempt's decision so two runs (e.g. two runtimes of one model) can be compared attempt by
    attempt, not only by their rates."""
    if DECISIONS is not None:
        rows = [[o.kind, o.identity, o.accepted, o.label, o.reason, o.frames] for o in outcomes]
        DECISIONS.append({"protocol": protocol, "attempts": rows})


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, with what the per-condition rows group it by."""

    kind: str  # genuine | impostor
    identity: str
    dataset: str
    accepted: bool
    label: str | None
    reason: str | None
    frames: int
    light: str = ""
    band: str = ""

    @property
    def signed_in_as_self(self) -> bool:
        return self.accepted and self.label == self.identity


def outcome_rates(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    genuine = [o for o in outcomes if o.kind == "genuine"]
    impostor = [o for o in outcomes if o.kind == "impostor"]
    reasons: dict[str, int] = {}
    for o in genuine:
        if not o.accepted:
            reasons[o.reason or "?"] = reasons.get(o.reason or "?", 0) + 1
    ng, ni = len(genuine), len(impostor)
    ok = sum(o.signed_in_as_self for o in genuine)
    wrong = sum(o.accepted and not o.signed_in_as_self for o in genuine)
    imp_ok = [o for o in impostor if o.accepted]
    accepted_frames = [o.frames for o in genuine if o.signed_in_as_self]
    return {
        "genuine_attempts": ng,
        "genuine_login_rate": ok / ng if ng else float("nan"),
        "wrong_identity_rate": wrong / ng if ng else float("nan"),
        "wrong_identity_attempts": wrong,
        "genuine_reject_reasons": reasons,
        "genuine_frames_to_accept_median": float(np.median(accepted_frames)) if accepted_frames else float("nan"),
        "impostor_attempts": ni,
        "impostor_accepted": len(imp_ok),
        "impostor_accept_rate": len(imp_ok) / ni if ni else float("nan"),
        "impostor_identities_accepted": len({o.identity for o in imp_ok}),
    }


def grouped_rates(outcomes: Sequence[Outcome], key: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(key(o), []).append(o)
    return {k: outcome_rates(v) for k, v in sorted(groups.items())}


def analyzer_overrides(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs for AnalyzerConfig (numbers, ``none``, or ``quality.FIELD`` / ``login_quality.FIELD``
    for a QualityThresholds field)."""
    from facelogin.pipeline.analyze import AnalyzerConfig

    out: dict[str, Any] = {}
    base = AnalyzerConfig()
    for item in items:
        name, _, text = item.partition("=")
        value: Any = None if text.lower() == "none" else float(text)
        group, _, field_name = name.partition(".")
        if field_name:
            current = out.get(group, getattr(base, group, None))
            if current is None and group == "login_quality":  # login frames start from enrolment's limits
                current = base.quality
            if current is None or not hasattr(current, field_name):
                parser.error(f"--analyzer: no field {name}")
            out[group] = replace(current, **{field_name: value})
        elif hasattr(base, name):
            out[name] = value
        else:
            parser.error(f"--analyzer: AnalyzerConfig has no field {name}")
    return out


def decision_config(args: argparse.Namespace) -> DecisionConfig:
    return DecisionConfig(
        min_frames=args.min_frames,
        max_frames=max(args.max_frames, args.min_frames),
        margin=args.margin,
        conflict=args.conflict,
        fusion=args.fusion,
        fusion_votes=args.fusion_votes,
    )


def run_seed(
    seed: int,
    identities: list[Identity],
    frames_of: dict[tuple[str, str], Frame],
    args: argparse.Namespace,
    kinds: list[str],
    live: tuple[dict[tuple[str, int], Session], dict[tuple[str, int], list[Frame]]] | None = None,
) -> dict[str, Any]:
    enrolled_ids, unknown_ids = make_split(identities, seed=seed, unknown_fraction=args.unknown_fraction)
    dataset_of = {i.name: i.dataset for i in identities}
    rng = np.random.default_rng(1_000 + seed)
    X, y = [], []
    not_enrolled = []
    login: list[tuple[str, Frame]] = []
    for ident in enrolled_ids:
        enrol = [frames_of[(str(p), "enrol")] for p in ident.images[: args.enroll]]
        usable = [f for f in enrol if f.usable]
        if not usable:
            not_enrolled.append(ident.name)
        for f in usable:
            X.append(f.embedding)
            y.append(ident.name)
        login += [(ident.name, frames_of[(str(p), "login")]) for p in ident.images[args.enroll :]]
    for ident in unknown_ids:
        login += [(ident.name, frames_of[(str(p), "login")]) for p in ident.images]
    enrolled_names = {i.name for i in enrolled_ids} - set(not_enrolled)
    attempts = make_attempts(
        login,
        enrolled_names,
        frames=args.frames,
        genuine_per_identity=args.genuine_per_identity,
        impostor_attempts=args.impostor_attempts,
        rng=rng,
    )
    Xe = np.stack(X).astype(np.float32)
    config = decision_config(args)

    # Usable login frames, embedded once; truth None for strangers.
    usable_idx = [i for i, (_, f) in enumerate(login) if f.usable]
    probes = np.stack([login[i][1].embedding for i in usable_idx]) if usable_idx else np.zeros((0, 512), np.float32)
    truth = [login[i][0] if login[i][0] in enrolled_names else None for i in usable_idx]

    rows: dict[str, Any] = {}
    sweep: dict[str, dict[str, Any]] = {}
    trained: dict[str, TrainedModel] = {}
    for kind in kinds:
        t0 = time.perf_counter()
        model = train_model(
            Xe,
            y,
            kind=kind,
            target_fpir=args.target_fpir,
            holdout=args.holdout,
            config=config,
            model_name=args.model,
            tail_method=args.tail,
            seed=seed,
        )
        fit_s = time.perf_counter() - t0
        trained[kind] = model
        # The live path: vote_analysis on each analysed frame (no face, several faces or poor quality
        # give no vote), then the attempt's AttemptDecider. vote_analyses is the same code, batched.
        votes = frame_votes(model, login)
        batch = [votes[i] for i in usable_idx]
        # Latency as the login sees it: one vote_analysis per frame (the batch above is for speed).
        single = []
        for i in usable_idx[:60]:
            t1 = time.perf_counter()
            vote_analysis(model, login[i][1].analysis)
            single.append((time.perf_counter() - t1) * 1000)
        vote_ms = float(np.median(single)) if single else float("nan")
        row = run_rule(votes, attempts, model.decider, dataset_of=dataset_of, analyses=[f.analysis for _, f in login])
        g_frames = [(v, t) for v, t in zip(batch, truth) if t is not None]
        s_frames = [v for v, t in zip(batch, truth) if t is None]
        row.update(
            {
                "classifier": kind,
                "rule": f"gate, {'fused track' if config.fusion == 'track' else 'votes'}, {config.min_frames} of {args.frames}",
                "rank1_accuracy": float(np.mean([v.classifier_label == t for v, t in g_frames]))
                if g_frames
                else float("nan"),
                "genuine_frame_accept_rate": float(np.mean([v.label == t for v, t in g_frames]))
                if g_frames
                else float("nan"),
                "stranger_frame_vote_rate": float(np.mean([v.label is not None for v in s_frames]))
                if s_frames
                else float("nan"),
                "threshold": model.threshold,
                "calibration": {
                    k: model.calibration.to_dict()[k]
                    for k in (
                        "threshold",
                        "components",
                        "method",
                        "expected_fpir",
                        "gallery_size",
                        "per_comparison_fmr",
                        "genuine_accept_rate",
                        "impostor_pairs",
                        "genuine_pairs",
                    )
                },
                "holdout": model.metrics.get("holdout", {}),
                "fit_seconds": fit_s,
                "vote_ms_per_frame": vote_ms,
            }
        )
        rows[kind] = row
        if args.sweep and kind == kinds[0]:
            sweep[kind] = {}
            for min_frames, margin, conflict in SWEEP:
                cfg = replace(
                    config,
                    min_frames=min_frames,
                    max_frames=max(config.max_frames, min_frames),
                    margin=margin,
                    conflict=conflict,
                )
                swept = with_config(model, **asdict(cfg))
                r = run_rule(frame_votes(swept, login), attempts, swept.decider)
                r.update(
                    {
                        "classifier": kind,
                        "rule": f"min{min_frames} margin{margin} {conflict}",
                        "rank1_accuracy": row["rank1_accuracy"],
                    }
                )
                sweep[kind][f"{min_frames}|{margin}|{conflict}"] = r

    # The thesis's rule on a softmax MLP trained on the same enrolment: every frame with a face counts
    # (the thesis had no quality check and no open-set gate), top probability > 72.349 % in 5 frames.
    mlp = trained.get("mlp") or train_model(
        Xe, y, kind="mlp", holdout=0, config=config, model_name=args.model, seed=seed
    )
    with_face = [i for i, (_, f) in enumerate(login) if f.embedding is not None]
    votes = [FrameVote.no_vote("no_face")] * len(login)
    if with_face:
        for i, v in zip(with_face, vote_frames(mlp, np.stack([login[i][1].embedding for i in with_face]))):
            votes[i] = v
    mlp_batch = [votes[i] for i in usable_idx]
    baseline = run_rule(votes, attempts, ThesisRule)
    g_frames = [(v, t) for v, t in zip(mlp_batch, truth) if t is not None]
    baseline.update(
        {
            "classifier": "mlp",
            "rule": "thesis: p>0.72349 in 5 frames",
            "rank1_accuracy": float(np.mean([v.classifier_label == t for v, t in g_frames]))
            if g_frames
            else float("nan"),
            # Frames of strangers the thesis would count for somebody (its per-frame false match).
            "stranger_frame_vote_rate": float(
                np.mean(
                    [votes[i].probability > THESIS_PROBABILITY for i in with_face if login[i][0] not in enrolled_names]
                )
            )
            if any(login[i][0] not in enrolled_names for i in with_face)
            else float("nan"),
            "threshold": None,
        }
    )
    main_model = trained[kinds[0]]
    live_row = None
    if live is not None:
        live_row = run_live(seed, main_model, enrolled_names, identities, enrolled_ids, unknown_ids, live[0], live[1], args)
    return {
        "live": live_row,
        "seed": seed,
        "enrolled_identities": len(enrolled_names),
        "unknown_identities": len(unknown_ids),
        "not_enrolled": not_enrolled,
        "enrolled_embeddings": len(y),
        "login_frames": len(login),
        "usable_login_frames": len(usable_idx),
        "verification_tar_at_far_1e-3": verification_tar(main_model, probes, truth),
        "rows": rows,
        "sweep": sweep,
        "baseline": baseline,
    }


# --- the live-session protocol ---------------------------------------------------------------------
# One held-out photo of a person becomes a webcam session (bench.webcam): the page's 640x480 JPEG frames
# at ~10 frames/s with noise, blur, sway and roll, the face 100-250 px tall and dim, normal or bright
# light, drawn per session. A genuine attempt is a session's first --live-frames frames in order; an
# impostor attempt is --live-frames of a stranger's session's --live-pool frames, in order, some dropped
# (as a congested connection drops them), so several attempts share a session: the impostor count says
# how many attempts, ``impostor_sessions`` how many distinct faces under distinct conditions.

SIZE_BANDS = ((100, 150), (150, 200), (200, 250))


def stable_number(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Session:
    identity: str
    dataset: str
    photo: Path
    photo_sha: str
    number: int
    conditions: Any  # bench.webcam.Conditions
    face_box: tuple[float, float, float, float] | None
    seed: int
    # The photo's head faces the camera (its pose passes the quality gate). Genuine sessions are made only
    # of such photos: a live student whose head is turned is asked to look at the camera, which a photo
    # cannot do. Strangers' sessions use every photo.
    frontal: bool = True

    @property
    def key(self) -> tuple[str, int]:
        return (str(self.photo), self.number)

    @property
    def band(self) -> str:
        h = self.conditions.face_height
        for lo, hi in SIZE_BANDS:
            if lo <= h < hi or (h == hi == SIZE_BANDS[-1][1]):
                return f"{lo}-{hi} px"
        return f"{h:.0f} px"

    def describe(self, index: int) -> str:
        from bench import webcam

        return json.dumps(
            {
                "webcam": webcam.VERSION,
                "photo": self.photo_sha,
                "conditions": _plain(self.conditions),
                "box": self.face_box,
                "seed": self.seed,
                "index": index,
            },
            sort_keys=True,
        )

    def camera(self) -> Any:
        from bench.webcam import Webcam, load_rgb

        return Webcam(
            load_rgb(self.photo.read_bytes()), np.random.default_rng(self.seed), self.conditions, face_box=self.face_box
        )


def make_session(ident: Identity, photo: Path, number: int, source: Frame | None, *, live_seed: int) -> Session:
    """Session ``number`` of ``photo``: its conditions depend on the photo's place in its dataset, not on
    the benchmark seed, so every seed meets the same sessions (and the cache holds them once)."""
    from bench.webcam import Conditions

    rng = np.random.default_rng([live_seed, stable_number(f"{ident.name}/{photo.name}"), number])
    conditions = Conditions.draw(rng, face_heights=(SIZE_BANDS[0][0], SIZE_BANDS[-1][1]))
    box, frontal = None, True
    if source is not None and source.analysis is not None and source.analysis.face is not None:
        box = tuple(round(float(v), 2) for v in source.analysis.face.box)
        frontal = source.analysis.quality is None or "turned" not in source.analysis.quality.reasons
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    return Session(ident.name, ident.dataset, photo, sha, number, conditions, box, int(rng.integers(2**63)), frontal)  # type: ignore[arg-type]


def live_sessions_needed(
    identities: Sequence[Identity], seeds: Sequence[int], args: argparse.Namespace
) -> list[tuple[Identity, Path]]:
    """Every (identity, photo) some seed turns into sessions: held-out photos of enrolled people,
    every photo of the people a seed keeps as strangers."""
    needed: dict[str, tuple[Identity, Path]] = {}
    for seed in seeds:
        enrolled, unknown = make_split(identities, seed=seed, unknown_fraction=args.unknown_fraction)
        for ident in enrolled:
            for photo in ident.images[args.enroll :]:
                needed[str(photo)] = (ident, photo)
        for ident in unknown:
            for photo in ident.images:
                needed[str(photo)] = (ident, photo)
    return list(needed.values())


def frame_reason(frame: Frame, vote: FrameVote) -> str:
    """Why a frame did (not) vote: ``vote``, ``quality:<reason>`` or a decide reason."""
    if frame.analysis is None:
        return "bad_image"
    gate = frame_gate(frame.analysis)
    if gate == "quality" and frame.analysis.quality is not None:
        return "quality:" + frame.analysis.quality.reasons[0]
    return gate or vote.reason


def run_live(
    seed: int,
    model: TrainedModel,
    enrolled_names: set[str],
    identities: list[Identity],
    enrolled_ids: list[Identity],
    unknown_ids: list[Identity],
    sessions: dict[tuple[str, int], Session],
    frames_of: dict[tuple[str, int], list[Frame]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    rng = np.random.default_rng(2_000 + seed)
    F, P = args.live_frames, args.live_pool
    held_out = [
        sessions[(str(photo), k)]
        for ident in enrolled_ids
        if ident.name in enrolled_names
        for photo in ident.images[args.enroll :]
        for k in range(args.live_sessions)
    ]
    genuine = [s for s in held_out if s.frontal]
    strangers = [sessions[(str(photo), k)] for ident in unknown_ids for photo in ident.images for k in range(args.live_sessions)]
    used = genuine + strangers
    flat: list[Frame] = [f for s in used for f in frames_of[s.key][: P]]
    offset: dict[tuple[str, int], int] = {}
    at = 0
    for s in used:
        offset[s.key] = at
        at += P
    analysed = [i for i, f in enumerate(flat) if f.analysis is not None]
    votes = [FrameVote.no_vote("bad_image")] * len(flat)
    for i, v in zip(analysed, vote_analyses(model, [flat[i].analysis for i in analysed])):
        votes[i] = v
    analyses = [f.analysis for f in flat]

    attempts: list[tuple[Session, str, tuple[int, ...]]] = [(s, "genuine", tuple(range(F))) for s in genuine]
    per_session = math.ceil(args.live_impostor_attempts / max(1, len(strangers))) if strangers else 0
    for s in strangers:
        picks = {tuple(range(F))}  # the session as streamed, then frames dropped at random
        tries = 0
        while len(picks) < min(per_session, math.comb(P, F)) and tries < per_session * 20:
            picks.add(tuple(sorted(rng.choice(P, size=F, replace=False).tolist())))
            tries += 1
        attempts += [(s, "impostor", p) for p in sorted(picks)]

    outcomes = []
    lost: dict[str, int] = {}  # failed genuine sessions by what most of their frames became
    decide_s, observed = 0.0, 0
    for s, kind, idx in attempts:
        base = offset[s.key]
        frames = [base + i for i in idx]
        decider = AttemptDecider(replace(model.config, max_frames=max(F, model.config.min_frames)), model=model)
        started = time.perf_counter()
        d = decide_attempt([votes[i] for i in frames], decider, [analyses[i] for i in frames])
        decide_s += time.perf_counter() - started
        observed += d.frames
        outcomes.append(Outcome(kind, s.identity, s.dataset, d.accepted, d.label, d.reason, d.frames, s.conditions.light, s.band))
        if kind == "genuine" and not outcomes[-1].signed_in_as_self:
            counts: dict[str, int] = {}
            for i in frames:
                r = frame_reason(flat[i], votes[i])
                if r != "vote":
                    counts[r] = counts.get(r, 0) + 1
            main = max(counts, key=counts.__getitem__) if counts else f"votes, {d.reason}"
            lost[main] = lost.get(main, 0) + 1

    # Where genuine frames go: per light and size band, what each streamed frame became.
    reasons: dict[str, dict[str, int]] = {}
    for s in genuine:
        base = offset[s.key]
        for i in range(F):
            r = frame_reason(flat[base + i], votes[base + i])
            for group in ("all", f"light {s.conditions.light}", f"size {s.band}", f"dataset {s.dataset}"):
                bucket = reasons.setdefault(group, {})
                bucket[r] = bucket.get(r, 0) + 1
    record_decisions("live", outcomes)
    row = outcome_rates(outcomes)
    row.update(
        {
            "seed": seed,
            "impostor_sessions": len(strangers),
            "genuine_sessions": len(genuine),
            "genuine_sessions_turned_away": len(held_out) - len(genuine),
            # The decider's own time per frame it observed (the votes are the batch's: vote_ms_per_frame).
            "decide_ms_per_frame": 1000 * decide_s / max(1, observed),
            "threshold": model.threshold,
            "by_dataset": grouped_rates(outcomes, lambda o: o.dataset),
            "by_light": grouped_rates(outcomes, lambda o: o.light),
            "by_size": grouped_rates(outcomes, lambda o: o.band),
            "genuine_frame_reasons": reasons,
            "failed_genuine_by_frames": lost,
            "failed_genuine": [
                {"identity": o.identity, "light": o.light, "size": o.band, "reason": o.reason}
                for o in outcomes
                if o.kind == "genuine" and not o.signed_in_as_self
            ],
        }
    )
    return row


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates pooled over seeds (attempt-weighted), with the worst seed beside them."""
    ng = sum(r["genuine_attempts"] for r in rows)
    ni = sum(r["impostor_attempts"] for r in rows)
    reasons: dict[str, int] = {}
    for r in rows:
        for k, v in r["genuine_reject_reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    with_genuine = [r for r in rows if r["genuine_attempts"]]
    with_impostor = [r for r in rows if r["impostor_attempts"]]
    ok = sum(r["genuine_login_rate"] * r["genuine_attempts"] for r in with_genuine)
    return {
        "seeds": len(rows),
        "genuine_attempts": ng,
        "genuine_login_rate": ok / ng if ng else float("nan"),
        "genuine_login_rate_min": min((r["genuine_login_rate"] for r in with_genuine), default=float("nan")),
        "wrong_identity_attempts": sum(r["wrong_identity_attempts"] for r in rows),
        "wrong_identity_rate": sum(r["wrong_identity_attempts"] for r in rows) / ng if ng else float("nan"),
        "genuine_reject_reasons": reasons,
        "genuine_frames_to_accept_median": _mean([r["genuine_frames_to_accept_median"] for r in rows]),
        "impostor_attempts": ni,
        "impostor_attempts_min": min((r["impostor_attempts"] for r in rows), default=0),
        "impostor_accepted": sum(r["impostor_accepted"] for r in rows),
        "impostor_accept_rate": sum(r["impostor_accepted"] for r in rows) / ni if ni else float("nan"),
        "impostor_accept_rate_max": max((r["impostor_accept_rate"] for r in with_impostor), default=float("nan")),
    }


def pooled_groups(per_seed: list[dict[str, Any]], field_name: str) -> dict[str, dict[str, Any]]:
    keys = sorted({k for r in per_seed for k in r.get(field_name, {})})
    return {k: pooled([r[field_name][k] for r in per_seed if k in r.get(field_name, {})]) for k in keys}


def print_seeds(seeds: Sequence[int], rows: list[dict[str, Any]], file: Any = sys.stdout) -> None:
    parts = [
        f"{seed}: {r['genuine_login_rate']:.4f}, {r['wrong_identity_attempts']} wrong, {r['impostor_accepted']}/{r['impostor_attempts']}"
        for seed, r in zip(seeds, rows)
    ]
    print("per seed (genuine, wrong identity, impostors): " + "; ".join(parts), file=file)


def print_rates(title: str, rows: dict[str, dict[str, Any]], file: Any = sys.stdout) -> None:
    head = (
        f"{title:<22} {'genuine login':>13} {'worst seed':>10} {'wrong id':>8} {'impostors accepted':>22} "
        f"{'worst seed':>10} {'frames':>6}  genuine failures"
    )
    print(head, file=file)
    print("-" * len(head), file=file)
    for name, r in rows.items():
        imp = f"{r['impostor_accepted']}/{r['impostor_attempts']}" if r["impostor_attempts"] else "—"
        worst_imp = f"{r['impostor_accept_rate_max']:.4f}" if r["impostor_attempts"] else "—"
        genuine = f"{r['genuine_login_rate']:.4f}" if r["genuine_attempts"] else "—"
        worst = f"{r['genuine_login_rate_min']:.4f}" if r["genuine_attempts"] else "—"
        frames = r.get("genuine_frames_to_accept_median")
        frames_text = f"{frames:.1f}" if frames is not None and not math.isnan(frames) else "—"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(r["genuine_reject_reasons"].items()))
        print(
            f"{name:<22} {genuine:>13} {worst:>10} {r['wrong_identity_attempts']:>8} {imp:>22} {worst_imp:>10} "
            f"{frames_text:>6}  {fails}",
            file=file,
        )


# --- summary -----------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.fmean(vals)) if vals else float("nan")


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates pooled over seeds (attempt-weighted), plus the worst seed for the safety numbers."""
    ng = sum(r["genuine_attempts"] for r in rows)
    ni = sum(r["impostor_attempts"] for r in rows)
    out = {
        "classifier": rows[0]["classifier"],
        "rule": rows[0]["rule"],
        "seeds": len(rows),
        "genuine_attempts": ng,
        "genuine_login_rate": sum(r["genuine_login_rate"] * r["genuine_attempts"] for r in rows) / ng
        if ng
        else float("nan"),
        "genuine_login_rate_min": min(r["genuine_login_rate"] for r in rows),
        "wrong_identity_rate": sum(r["wrong_identity_attempts"] for r in rows) / ng if ng else float("nan"),
        "wrong_identity_rate_max": max(r["wrong_identity_rate"] for r in rows),
        "impostor_attempts": ni,
        "impostor_accepted": sum(r["impostor_accepted"] for r in rows),
        "impostor_accept_rate": sum(r["impostor_accepted"] for r in rows) / ni if ni else float("nan"),
        "impostor_accept_rate_max": max(r["impostor_accept_rate"] for r in rows),
        "rank1_accuracy": _mean([r["rank1_accuracy"] for r in rows]),
    }
    if rows[0].get("threshold") is not None:
        out["threshold_mean"] = _mean([r["threshold"] for r in rows])
        out["threshold_range"] = [min(r["threshold"] for r in rows), max(r["threshold"] for r in rows)]
        out["fit_seconds"] = _mean([r["fit_seconds"] for r in rows])
        out["vote_ms_per_frame"] = _mean([r["vote_ms_per_frame"] for r in rows])
        out["genuine_frame_accept_rate"] = _mean([r["genuine_frame_accept_rate"] for r in rows])
        out["stranger_frame_vote_rate"] = _mean([r["stranger_frame_vote_rate"] for r in rows])
    elif "stranger_frame_vote_rate" in rows[0]:
        out["stranger_frame_vote_rate"] = _mean([r["stranger_frame_vote_rate"] for r in rows])
    return out


def print_table(summary: dict[str, Any], file: Any = sys.stdout) -> None:
    head = (
        f"{'classifier':<10} {'rule':<30} {'genuine login':>13} {'wrong id':>9} {'impostor accept':>21} "
        f"{'stranger frames':>15} {'rank-1':>7} {'threshold':>13} {'fit s':>6}"
    )
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in summary["classifiers"] + ([summary["baseline"]] if summary.get("baseline") else []):
        thr = "—"
        if r.get("threshold_range"):
            lo, hi = r["threshold_range"]
            thr = f"{lo:.3f}–{hi:.3f}"
        fit = f"{r['fit_seconds']:.1f}" if "fit_seconds" in r else "—"
        imp = f"{r['impostor_accepted']}/{r['impostor_attempts']} ({r['impostor_accept_rate']:.4f})"
        sfv = r.get("stranger_frame_vote_rate")
        sfv_text = f"{sfv:.4f}" if sfv is not None and not math.isnan(sfv) else "—"
        print(
            f"{r['classifier']:<10} {r['rule']:<30} {r['genuine_login_rate']:>13.4f} {r['wrong_identity_rate']:>9.4f} "
            f"{imp:>21} {sfv_text:>15} {r['rank1_accuracy']:>7.4f} {thr:>13} {fit:>6}",
            file=file,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", action="append", type=Path, default=[], help="DIR/<identity>/<images> (repeatable)"
    )
    parser.add_argument(
        "--unknown", action="append", type=Path, default=[], help="extra never-enrolled identities (repeatable)"
    )
    parser.add_argument("--enroll", type=int, default=5, help="first K images per identity are enrolled (default 5)")
    parser.add_argument(
        "--unknown-fraction", type=float, default=0.2, help="identities per dataset never enrolled (default 0.2)"
    )
    parser.add_argument("--seed", action="append", type=int, default=[], help="a seed (repeatable)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 when no --seed is given (default 5)")
    parser.add_argument(
        "--classifier",
        default=DEFAULT_CLASSIFIER,
        help=f"one of {', '.join(CLASSIFIER_KINDS)}, or 'all' to compare every kind (default {DEFAULT_CLASSIFIER})",
    )
    parser.add_argument("--frames", type=int, default=5, help="frames per login attempt (default 5)")
    parser.add_argument("--min-frames", type=int, default=DecisionConfig.min_frames, help="agreeing frames to sign in")
    parser.add_argument("--max-frames", type=int, default=DecisionConfig.max_frames)
    parser.add_argument(
        "--margin", type=float, default=DecisionConfig.margin, help="best - second-best cosine a vote needs"
    )
    parser.add_argument("--conflict", choices=("votes", "confident"), default=DecisionConfig.conflict)
    parser.add_argument(
        "--fusion-votes", type=int, default=DecisionConfig.fusion_votes, help="frames of a fused track that must also vote alone"
    )
    parser.add_argument(
        "--fusion", choices=FUSIONS, default=DecisionConfig.fusion, help="how an attempt's frames add up (DecisionConfig.fusion)"
    )
    parser.add_argument("--target-fpir", type=float, default=0.001)
    parser.add_argument(
        "--tail", choices=("gpd", "normal", "max"), default="gpd", help="calibration's tail model (calibrate.method)"
    )
    parser.add_argument("--holdout", type=float, default=0.2, help="train_model's held-out fraction for its metrics")
    parser.add_argument(
        "--impostor-attempts", type=int, default=5_000, help="at least this many impostor attempts per seed"
    )
    parser.add_argument(
        "--genuine-per-identity", type=int, default=20, help="genuine attempts per enrolled identity, at most"
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        default=os.environ.get("FACELOGIN_MODEL") or DEFAULT_MODEL,
        help=f"face model (FACELOGIN_MODEL; default {DEFAULT_MODEL}; weights.prepare_weights)",
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODELS)
    parser.add_argument(
        "--cache",
        nargs="?",
        type=Path,
        const=DEFAULT_CACHE,
        default=DEFAULT_CACHE,
        help="embedding cache dir (default data/bench-cache)",
    )
    parser.add_argument("--no-cache", dest="cache", action="store_const", const=None, help="recompute every embedding")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as FACELOGIN_TORCH_THREADS)")
    parser.add_argument("--embedder", choices=("torch", "onnx"), default="onnx", help="FaceNet's backend (FACELOGIN_EMBEDDER; default onnx)")
    parser.add_argument("--sface-runtime", choices=("torch", "opencv"), default="torch", help="SFace's runtime (FACELOGIN_SFACE_RUNTIME; default torch)")
    parser.add_argument("--decisions", type=Path, help="also write every attempt's decision here (to compare two runs attempt by attempt)")
    parser.add_argument(
        "--login-detect-side",
        type=int,
        default=320,
        help="detect login frames on a copy this long (FACELOGIN_LOGIN_DETECT_SIDE, default 320; 0: 640)",
    )
    parser.add_argument(
        "--webcam-face-height",
        type=int,
        default=None,
        help="login images become 640x480 webcam JPEG frames with the photo this tall (e.g. 200); default: the photo itself",
    )
    parser.add_argument(
        "--analyzer",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an AnalyzerConfig field for this run (repeatable), e.g. expose_dark_below=0 to measure without it",
    )
    parser.add_argument("--no-live", dest="live", action="store_false", help="skip the live-session protocol")
    parser.add_argument("--live-sessions", type=int, default=2, help="webcam sessions per photo (default 2)")
    parser.add_argument("--live-frames", type=int, default=12, help="frames a live attempt may use (default 12: 1.2 s)")
    parser.add_argument(
        "--live-pool", type=int, default=16, help="frames rendered per session; impostor attempts drop some (default 16)"
    )
    parser.add_argument(
        "--live-impostor-attempts", type=int, default=5_000, help="at least this many live impostor attempts per seed"
    )
    parser.add_argument("--live-seed", type=int, default=0, help="draws the sessions' conditions (default 0)")
    parser.add_argument(
        "--sweep", action="store_true", help="also try min-frames 1-5 x margin 0/0.05/0.1 x conflict rule"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help="where to write the results (default bench/results/accuracy.json)",
    )
    args = parser.parse_args(argv)
    global DECISIONS
    DECISIONS = [] if args.decisions else None
    if not args.dataset:
        parser.error("give at least one --dataset")
    kinds = list(CLASSIFIER_KINDS) if args.classifier == "all" else [args.classifier]
    if kinds[0] not in CLASSIFIER_KINDS:
        parser.error(f"unknown classifier {args.classifier!r}")
    if args.classifier == "all":  # the default first: its verification numbers head the report
        kinds.remove(DEFAULT_CLASSIFIER)
        kinds.insert(0, DEFAULT_CLASSIFIER)
    seeds = args.seed or list(range(args.seeds))

    identities = [i for d in args.dataset for i in find_identities(d)]
    identities += [i for d in args.unknown for i in find_identities(d, always_unknown=True)]
    if len({i.name for i in identities}) != len(identities):
        raise SystemExit("two datasets share a folder name; rename one")

    from tqdm import tqdm

    analyzer = Analyzer(
        model=args.model,
        model_dir=args.model_dir,
        cache_dir=args.cache,
        threads=args.threads,
        embedder=args.embedder,
        sface_runtime=args.sface_runtime,
        login_detect_side=args.login_detect_side or None,
        webcam_face_height=args.webcam_face_height,
        overrides=analyzer_overrides(args.analyzer, parser),
    )
    # Every image is a login frame in some seed; the first K of each can also be an enrolment photo.
    jobs = [(p, "login") for i in identities for p in i.images]
    jobs += [(p, "enrol") for i in identities if not i.always_unknown for p in i.images[: args.enroll]]
    with tqdm(total=len(jobs), desc="analysing", unit="img", file=sys.stderr) as progress:
        frames_of = analyzer.analyze_many(jobs, progress=progress)

    login_frames = [f for (p, purpose), f in frames_of.items() if purpose == "login"]
    stage: dict[str, list[float]] = {}
    for f in frames_of.values():
        if f.analysis is not None:
            for k, v in f.analysis.timings_ms.items():
                stage.setdefault(k, []).append(v)
    quality_reasons: dict[str, int] = {}
    for f in login_frames:
        if f.analysis is not None and f.analysis.quality is not None:
            for r in f.analysis.quality.reasons:
                quality_reasons[r] = quality_reasons.get(r, 0) + 1

    live = None
    live_stage: dict[str, list[float]] = {}
    if args.live:
        if args.live_pool < args.live_frames:
            parser.error("--live-pool must be at least --live-frames")
        needed = live_sessions_needed(identities, seeds, args)
        with tqdm(total=len(needed), desc="photos' faces", unit="img", file=sys.stderr) as progress:
            sources = analyzer.analyze_many([(p, "source") for _, p in needed], progress=progress)
        sessions = {
            s.key: s
            for ident, photo in needed
            for s in (
                make_session(ident, photo, k, sources[(str(photo), "source")], live_seed=args.live_seed)
                for k in range(args.live_sessions)
            )
        }
        total = len(sessions) * args.live_pool
        with tqdm(total=total, desc="live frames", unit="frame", file=sys.stderr) as progress:
            live_frames = analyzer.analyze_sessions(list(sessions.values()), args.live_pool, progress=progress)
        live = (sessions, live_frames)
        for frames in live_frames.values():
            for f in frames:
                if f.analysis is not None:
                    for k, v in f.analysis.timings_ms.items():
                        live_stage.setdefault(k, []).append(v)

    from threadpoolctl import threadpool_limits

    per_seed = []
    # One BLAS/OpenMP thread for the classifiers: on 2 cores the MLP fits 4-10x faster than with two
    # (torch's, scikit-learn's and numpy's pools oversubscribe; notes/performance.md).
    with threadpool_limits(limits=1):
        for seed in tqdm(seeds, desc="seeds", unit="seed", file=sys.stderr):
            per_seed.append(run_seed(seed, identities, frames_of, args, kinds, live))

    classifiers = [aggregate([s["rows"][k] for s in per_seed]) for k in kinds]
    baseline = aggregate([s["baseline"] for s in per_seed])
    main_row = classifiers[0]
    vote_ms = [s["rows"][kinds[0]]["vote_ms_per_frame"] for s in per_seed]
    stage_ms = {k: float(np.median(v)) for k, v in sorted(stage.items())}
    stage_ms["vote (classify + gate)"] = float(np.median(vote_ms))
    summary = {
        "command": "python -m bench.accuracy " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "analyzer_config": repr(analyzer.config),
        "decision": asdict(decision_config(args)),
        "target_fpir": args.target_fpir,
        "tail": args.tail,
        "classifier": kinds[0],
        "seeds": seeds,
        "identities": len(identities),
        "images": len(login_frames),
        "detect_failures": sum(1 for f in login_frames if not f.has_face),
        "decode_failures": sum(1 for f in login_frames if f.analysis is None),
        "quality_rejects": sum(
            1 for f in login_frames if f.analysis is not None and frame_gate(f.analysis) == "quality"
        ),
        "several_faces": sum(
            1 for f in login_frames if f.analysis is not None and frame_gate(f.analysis) == "several_faces"
        ),
        "quality_reasons": quality_reasons,
        "rank1_accuracy": main_row["rank1_accuracy"],
        "verification_tar_at_far_1e-3": _mean([s["verification_tar_at_far_1e-3"] for s in per_seed]),
        "genuine_login_rate": main_row["genuine_login_rate"],
        "wrong_identity_rate": main_row["wrong_identity_rate"],
        "impostor_accept_rate": main_row["impostor_accept_rate"],
        "impostor_attempts": main_row["impostor_attempts"],
        "genuine_attempts": main_row["genuine_attempts"],
        "thresholds": [{"seed": s["seed"], **s["rows"][kinds[0]]["calibration"]} for s in per_seed],
        "stage_ms": stage_ms,
        "stage_ms_note": "median per image as first measured (cached images keep the timings of their first run)",
        "cache": {"dir": str(args.cache) if args.cache else None, "hits": analyzer.hits, "misses": analyzer.misses},
        "classifiers": classifiers,
        "baseline": baseline,
        "per_seed": per_seed,
    }
    main_seeds = [s["rows"][kinds[0]] for s in per_seed]
    photos_rows = {"all": pooled(main_seeds)}
    photos_rows.update({f"dataset {k}": v for k, v in pooled_groups(main_seeds, "by_dataset").items()})
    summary["many_photos"] = photos_rows
    if live is not None:
        live_seeds = [s["live"] for s in per_seed]
        live_rows = {"all": pooled(live_seeds)}
        for field_name, prefix in (("by_dataset", "dataset"), ("by_light", "light"), ("by_size", "size")):
            live_rows.update({f"{prefix} {k}": v for k, v in pooled_groups(live_seeds, field_name).items()})
        frame_reasons: dict[str, dict[str, int]] = {}
        for r in live_seeds:
            for group, counts in r["genuine_frame_reasons"].items():
                bucket = frame_reasons.setdefault(group, {})
                for k, v in counts.items():
                    bucket[k] = bucket.get(k, 0) + v
        lost: dict[str, int] = {}
        for r in live_seeds:
            for k, v in r["failed_genuine_by_frames"].items():
                lost[k] = lost.get(k, 0) + v
        summary["live_session"] = {
            **live_rows["all"],
            "failed_genuine_by_frames": lost,
            "protocol": {
                "sessions_per_photo": args.live_sessions,
                "frames_per_attempt": args.live_frames,
                "frames_per_session": args.live_pool,
                "impostor_attempts_per_seed_at_least": args.live_impostor_attempts,
                "face_heights_px": [SIZE_BANDS[0][0], SIZE_BANDS[-1][1]],
                "live_seed": args.live_seed,
            },
            "impostor_sessions_per_seed": [r["impostor_sessions"] for r in live_seeds],
            "genuine_sessions_per_seed": [r["genuine_sessions"] for r in live_seeds],
            "genuine_sessions_left_out_head_turned_per_seed": [r["genuine_sessions_turned_away"] for r in live_seeds],
            "rows": live_rows,
            "per_seed": [{k: v for k, v in r.items() if k != "genuine_frame_reasons"} for r in live_seeds],
            "genuine_frame_reasons": frame_reasons,
            "stage_ms": {k: float(np.median(v)) for k, v in sorted(live_stage.items())},
            "stage_note": "median per frame where the stage ran (expose and brighten run on dark faces only)",
            "decide_ms_per_frame": _mean([r["decide_ms_per_frame"] for r in live_seeds]),
        }
    print(
        f"\n{summary['identities']} identities, {summary['images']} images, {summary['detect_failures']} without a face, "
        f"{summary['quality_rejects']} of poor quality; seeds {seeds}; target FPIR {args.target_fpir}"
    )
    print(
        f"rank-1 {summary['rank1_accuracy']:.4f}, verification TAR@FAR1e-3 {summary['verification_tar_at_far_1e-3']:.4f}, "
        f"stage ms {json.dumps({k: round(v, 1) for k, v in stage_ms.items()})}\n"
    )
    print_table(summary)
    print("\nmany photos (" + (f"webcam frames, face {args.webcam_face_height} px" if args.webcam_face_height else "the photos") + "):")
    print_rates("", photos_rows)
    print_seeds(seeds, main_seeds)
    if live is not None:
        ls = summary["live_session"]
        print(
            f"\nlive session: {len(live[0])} sessions x {args.live_pool} frames; an attempt uses {args.live_frames}; "
            f"impostor sessions per seed {ls['impostor_sessions_per_seed']}; genuine sessions per seed "
            f"{ls['genuine_sessions_per_seed']} (left out, the photo's head turned: "
            f"{ls['genuine_sessions_left_out_head_turned_per_seed']}); "
            f"stage ms {json.dumps({k: round(v, 1) for k, v in ls['stage_ms'].items()})}; "
            f"decider {ls['decide_ms_per_frame']:.3f} ms a frame"
        )
        print_rates("", ls["rows"])
        print_seeds(seeds, live_seeds)
        print("failed genuine sessions, by what most of their frames became: " + ", ".join(f"{k} {v}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1])))
        print("\ngenuine live frames (first --live-frames of every genuine session), what each became:")
        for group, counts in sorted(ls["genuine_frame_reasons"].items()):
            n = sum(counts.values())
            text = ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            print(f"  {group:<20} {n:>6}  {text}")
    if args.sweep:
        sweep_rows = [
            aggregate([s["sweep"][kinds[0]][key] for s in per_seed]) for key in per_seed[0]["sweep"][kinds[0]]
        ]
        summary["sweep"] = sweep_rows
        print(f"\ndecision sweep ({kinds[0]}, same models and thresholds):")
        print_table({"classifiers": sweep_rows})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_plain(summary), indent=2, default=str, allow_nan=True) + "\n")
    print(f"\nwrote {args.json}")
    if args.decisions:
        args.decisions.write_text(json.dumps({"command": summary.get("command"), "runs": DECISIONS}) + "\n")
        print(f"wrote {args.decisions} ({sum(len(r['attempts']) for r in DECISIONS or [])} attempts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
