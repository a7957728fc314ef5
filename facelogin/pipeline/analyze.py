"""decode → detect → quality → align → embed, for one image or a batch with one embedding call.

Login frames and enrolment photos take the same path; only the face-count rule differs:
- ``purpose="enrol"``: the photo must show exactly one face; none raises ``errors.NoFace``, several
  raise ``errors.TooManyFaces``.
- ``purpose="login"``: no face is an ordinary answer (``face=None``: the live page says "no face");
  with several faces the largest is used and ``detection.count`` tells the caller about the others.

Embedding policy: a face is embedded only when its quality report is ok (``embed_poor_quality=False``,
the default). A poor frame gives no vote in the decision anyway, and the embedding is the dearest
stage (~47 ms per face at batch 1), so computing it would only feed load. Set the flag to embed every
face that was found (benchmarks that study poor frames do); ``embed_every_login_face`` embeds every
face of a login frame only: the liveness check's (every frame of its face track, turned, blurred or
small, must still be the student recognised), while a poor enrolment photo is still not embedded.
``embed=False`` skips the stage.

Dark frames (login only; an enrolment photo should be retaken in good light, since the gallery sets
the thresholds): when the face is too dark, or no face was found in a dark frame, the image is brightened
(``quality.brighten``: a 1 % auto-contrast) and detected again; measured on real faces darkened to
15-35 % with sensor noise and JPEG, this raised detection from 80 % to 100 % at 15 % and the cosine to
the original face from 0.64-0.92 to 0.86-0.95. A frame rescued that way carries a ``brighten`` entry in
``timings_ms``; its quality report describes the brightened image.

Timings: ``timings_ms`` always has decode, detect, quality, align and embed (0.0 for a stage that did
not run). In a batch, ``embed`` is the batch's embedding time divided by the faces embedded.

Thread safety: no lock. MTCNN and InceptionResnetV1 run in inference mode and keep no state between
calls, so worker threads may share one analyser.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from . import errors, quality
from .align import AlignConfig, align_face, align_five_points
from .decode import LIVE_FORMATS, DecodeLimits, decode_image
from .detect import DetectorConfig, FaceDetector, as_rgb_array
from .flash import skin_colour
from .mesh import FaceMesher
from .pad import PresentationAttackDetector
from .quality import QualityThresholds
from .types import Detection, Face, FrameAnalysis, QualityReport

LOGIN, ENROL = "login", "enrol"
PURPOSES = (LOGIN, ENROL)
STAGES = ("decode", "detect", "quality", "align", "embed")


class SupportsEmbed(Protocol):
    """An embedder. It may name its crop: ``input_size`` (px, default 160) and ``alignment`` ("box":
    align_face's box crop, the default; "five_points": align_five_points, as SFace takes it)."""

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class AnalyzerConfig:
    decode: DecodeLimits = field(default_factory=DecodeLimits)  # enrolment photos
    # Sign-in frames (None: the same as ``decode``). The portal passes a webcam's limits
    # (DecodeLimits.login_frame, see decode.py): a small file that decodes huge is refused from its header.
    login_decode: DecodeLimits | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    align: AlignConfig = field(default_factory=AlignConfig)
    # Decode at most this big. A 12 MP phone photo decodes at 1/2 or 1/4 scale in the JPEG DCT (draft
    # mode, nearly free); detection runs at DetectorConfig.max_side (640) anyway, and 1280 px keeps
    # enough of a portrait face (several hundred px) for the 160 px crop. Webcam frames are smaller.
    # Quality's min_face_px is in pixels of this decoded image.
    max_side: int | None = 1280
    # Accepted by analyze_bytes unless the call passes its own; benchmarks widen it (PGM, BMP, ...).
    formats: tuple[str, ...] = LIVE_FORMATS
    embed_poor_quality: bool = False
    # Brighten-and-retry for dark frames (see module doc), unless the face's mean luma is under
    # rescue_min_brightness: too little signal is left. Measured after brightening (130 real faces
    # darkened, sensor noise, JPEG): face luma ~18 gave cosine to the undarkened face 0.87 (5th
    # percentile 0.76), ~12 gave 0.78 (0.62), ~8 gave 0.64 (0.35).
    brighten_dark: bool = True
    rescue_min_brightness: float = 10.0
    # Face-priority exposure for login frames (``quality.expose_face``): a found face whose luma is under
    # ``expose_dark_below`` (or over ``expose_bright_above``) is brought to ``expose_target`` before its
    # quality is judged and its crop cut. Measured on bench.accuracy's live sessions in dim and bright light
    # (seed 0, 308 sessions of held-out photos): dim sessions signed in 127 of 146 with the whole-frame
    # brighten alone and 136 with a gain on faces under 70 (at most 3x or 4x: the same); a gamma on
    # bright faces (over 170-200) LOST bright sessions (140 of 162 fell to 105-128), so it is off.
    expose_dark_below: float | None = 70.0
    expose_bright_above: float | None = None
    expose_target: float = 110.0
    expose_max_gain: float = 3.0
    # Login frames are judged by these limits (None: ``quality``'s, which enrolment photos always keep:
    # a weak enrolment photo weakens every later sign-in, a weak login frame only its own attempt).
    # Measured with bench.accuracy (5 seeds, 5,000 impostor attempts each): a bright face up to a luma of
    # 245 still matches (live bright sessions 140 -> 149 of 162 on seed 0, no stranger's frame voting:
    # 0 of 650); a face down to 50 px too (webcam frames with a 130 px photo: genuine sign-ins 0.874 ->
    # 1.000, all of the gain on Yale, whose faces there are 55-60 px; impostors 0 of 25,000 either way).
    login_quality: QualityThresholds | None = field(
        default_factory=lambda: QualityThresholds(max_brightness=245.0, min_face_px=50.0)
    )
    # Login frames are detected on a copy this long (None: DetectorConfig.max_side). A face at the
    # sign-in camera fills much of a 640x480 frame; MTCNN's cost follows the detection image's area.
    login_detect_side: int | None = None
    # Embed every face a login frame shows, whatever its quality (it still gives no identity vote:
    # decide.frame_gate): the liveness check judges who every frame of its face track is.
    embed_every_login_face: bool = False


def expose_login_face(image: np.ndarray, face: Face, cfg: AnalyzerConfig) -> tuple[np.ndarray, float] | None:
    """A login frame's face-priority exposure under ``cfg`` (``quality.expose_face``); None when it is
    off or the face is within its limits."""
    if not (cfg.expose_dark_below or cfg.expose_bright_above):
        return None
    return quality.expose_face(
        image,
        face,
        dark_below=cfg.expose_dark_below or 0.0,
        bright_above=cfg.expose_bright_above or 255.0,
        target=cfg.expose_target,
        max_gain=cfg.expose_max_gain,
    )


def _zero_timings() -> dict[str, float]:
    return dict.fromkeys(STAGES, 0.0)


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self.last) * 1000
        self.last = now


class FaceAnalyzer:
    def __init__(
        self,
        config: AnalyzerConfig | None,
        embedder: SupportsEmbed,
        *,
        mesher: FaceMesher | None = None,
        pad: PresentationAttackDetector | None = None,
    ) -> None:
        """``mesher`` (dense landmarks and the skin's colour) and ``pad`` (a presentation-attack score) run
        on login frames with a face, for the liveness check; enrolment photos never need them."""
        self.config = config or AnalyzerConfig()
        self.embedder = embedder
        self.detector = FaceDetector(self.config.detector)
        self.mesher = mesher
        self.pad = pad

    def warm_up(self) -> None:
        """Load MTCNN and the embedder and run each once, so the first user does not wait for it."""
        self.detector.load()
        self.detector.detect(np.full((480, 640, 3), 128, dtype=np.uint8))
        side = getattr(self.embedder, "input_size", 160)
        self.embedder.embed(np.zeros((1, side, side, 3), dtype=np.uint8))
        if self.mesher is not None:
            self.mesher.load()

    # --- one image ---------------------------------------------------------------------------
    def analyze_bytes(
        self,
        data: bytes,
        *,
        purpose: str = LOGIN,
        embed: bool = True,
        formats: Sequence[str] | None = None,
    ) -> FrameAnalysis:
        """Raises the decode errors (errors.ImageError) and, for enrolment, NoFace / TooManyFaces."""
        _check_purpose(purpose)
        timings = _zero_timings()
        image = self._decode(data, formats, timings, purpose)
        analysis = self._prepare(image, purpose, timings)
        return self._embed([analysis], purpose)[0] if embed else analysis

    def analyze_image(self, image: np.ndarray, *, purpose: str = LOGIN, embed: bool = True) -> FrameAnalysis:
        """The same from an already decoded RGB uint8 array (decode time 0)."""
        _check_purpose(purpose)
        analysis = self._prepare(as_rgb_array(image), purpose, _zero_timings())
        return self._embed([analysis], purpose)[0] if embed else analysis

    # --- many images -------------------------------------------------------------------------
    def analyze_batch(
        self,
        frames: Sequence[bytes],
        *,
        purpose: str = LOGIN,
        embed: bool = True,
        formats: Sequence[str] | None = None,
    ) -> list[FrameAnalysis | errors.PipelineError]:
        """One result per frame, in order: a FrameAnalysis, or the PipelineError that frame raised.

        A bad frame must not fail the frames of other users in the same batch, so per-frame errors are
        returned in place (facelogin.pipeline.batching relays them to each caller). Same-size frames are
        detected together (``FaceDetector.detect_batch``: ~0.6x the time of one call each; the batch's
        detection time is shared out equally in ``timings_ms``), and every face to embed goes through ONE
        embedder call (with torch fp32 a face cost ~0.55x as much at batch 8 as at batch 1; ONNX Runtime,
        the default, runs near this CPU's peak either way).
        """
        _check_purpose(purpose)
        results: list[FrameAnalysis | errors.PipelineError] = []
        decoded: list[tuple[int, np.ndarray, dict[str, float]]] = []
        for data in frames:
            timings = _zero_timings()
            try:
                decoded.append((len(results), self._decode(data, formats, timings, purpose), timings))
                results.append(None)  # type: ignore[arg-type]  # filled below
            except errors.PipelineError as exc:
                results.append(exc)
        started = time.perf_counter()
        detections = self.detector.detect_batch([image for _, image, _ in decoded], max_side=self._detect_side(purpose))
        per_frame_ms = (time.perf_counter() - started) * 1000 / max(1, len(decoded))
        for (index, image, timings), detection in zip(decoded, detections, strict=True):
            timings["detect"] = per_frame_ms
            try:
                results[index] = self._prepare(image, purpose, timings, detection)
            except errors.PipelineError as exc:
                results[index] = exc
        if not embed:
            return results
        ready = [r for r in results if isinstance(r, FrameAnalysis)]
        embedded = iter(self._embed(ready, purpose))
        return [next(embedded) if isinstance(r, FrameAnalysis) else r for r in results]

    # --- stages ------------------------------------------------------------------------------
    def _decode(self, data: bytes, formats: Sequence[str] | None, timings: dict[str, float], purpose: str) -> np.ndarray:
        clock = _Clock(timings)
        image = decode_image(
            data,
            self.config.login_decode if purpose == LOGIN and self.config.login_decode else self.config.decode,
            max_side=self.config.max_side,
            formats=self.config.formats if formats is None else formats,
        )
        clock.lap("decode")
        return image

    def _detect_side(self, purpose: str) -> int | None:
        return self.config.login_detect_side if purpose == LOGIN else None

    def _prepare(
        self, image: np.ndarray, purpose: str, timings: dict[str, float], detection: Detection | None = None
    ) -> FrameAnalysis:
        """quality → align for one decoded image (detecting it first unless ``detection`` is given)."""
        cfg = self.config
        clock = _Clock(timings)
        detect_side = self._detect_side(purpose)
        # The camera's own pixels, kept for liveness: the mesh, the skin's colour (the screen's reflection,
        # which exposure gain and auto-contrast would distort) and a presentation-attack detector.
        camera = image
        limits = cfg.login_quality if purpose == LOGIN and cfg.login_quality is not None else cfg.quality
        if detection is None:
            detection = self.detector.detect(image, max_side=detect_side)
            clock.lap("detect")
        report = quality.assess(image, detection.largest, limits) if detection.largest else None
        clock.lap("quality")

        if purpose == LOGIN and detection.largest is not None:
            exposed = expose_login_face(image, detection.largest, cfg)
            if exposed is not None:
                image = exposed[0]
                report = quality.assess(image, detection.largest, limits)
                clock.lap("expose")

        if cfg.brighten_dark and purpose == LOGIN and self._worth_brightening(image, report):
            brightened = quality.brighten(image)
            clock.lap("brighten")
            retry = self.detector.detect(brightened, max_side=detect_side)
            clock.lap("detect")
            if retry.largest is not None:
                report = quality.assess(brightened, retry.largest, limits)
                clock.lap("quality")
                image, detection = brightened, retry

        if purpose == ENROL:
            if detection.count == 0:
                raise errors.NoFace()
            if detection.count > 1:
                raise errors.TooManyFaces(count=detection.count)
        face = detection.largest
        if face is None or report is None:
            return FrameAnalysis(detection=detection, face=None, quality=None, timings_ms=timings)
        if getattr(self.embedder, "alignment", "box") == "five_points":  # e.g. SFace: its own five-point crop
            crop = align_five_points(image, face, getattr(self.embedder, "input_size", 112))
        else:
            crop = align_face(image, face, cfg.align)
        clock.lap("align")
        mesh = skin = pad_score = None
        if purpose == LOGIN and self.mesher is not None:
            mesh = self.mesher.mesh(camera, face)
            skin = skin_colour(camera, mesh) if mesh is not None else None
            clock.lap("mesh")
        if purpose == LOGIN and self.pad is not None:
            pad_score = float(self.pad.score(camera, face))
            clock.lap("pad")
        return FrameAnalysis(
            detection=detection,
            face=face,
            quality=report,
            crop=crop,
            timings_ms=timings,
            mesh=mesh,
            skin_rgb=skin,
            pad_score=pad_score,
        )

    def _worth_brightening(self, image: np.ndarray, report: QualityReport | None) -> bool:
        floor = self.config.rescue_min_brightness
        if report is not None:
            return "too_dark" in report.reasons and report.brightness >= floor
        # No face: retry only when the whole frame is dark (a bright empty room stays "no face").
        mean = float(quality.luma(image[::4, ::4]).mean())
        return floor <= mean < self.config.quality.min_brightness

    def _embed(self, analyses: list[FrameAnalysis], purpose: str) -> list[FrameAnalysis]:
        wanted = [i for i, a in enumerate(analyses) if a.crop is not None and a.quality is not None and self._wants_embedding(a.quality, purpose)]
        if not wanted:
            return analyses
        started = time.perf_counter()
        vectors = np.asarray(self.embedder.embed(np.stack([analyses[i].crop for i in wanted])), dtype=np.float32)
        per_face_ms = (time.perf_counter() - started) * 1000 / len(wanted)
        out = list(analyses)
        for row, i in enumerate(wanted):
            timings = {**analyses[i].timings_ms, "embed": per_face_ms}
            out[i] = replace(analyses[i], embedding=vectors[row], timings_ms=timings)
        return out


    def _wants_embedding(self, report: QualityReport, purpose: str) -> bool:
        return report.ok or self.config.embed_poor_quality or (purpose == LOGIN and self.config.embed_every_login_face)


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}")


__all__ = ["ENROL", "LOGIN", "PURPOSES", "STAGES", "AnalyzerConfig", "FaceAnalyzer", "SupportsEmbed"]
