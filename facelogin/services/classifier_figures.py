"""What a classifier version's admin page draws: its score distributions, its stranger-match chance
against the gallery size, and its held-out check, from what training stored on the version.

``ClassifierVersion.thresholds`` holds the calibration (``facelogin.pipeline.calibrate.Calibration.
to_dict``): summary statistics of the genuine and impostor scores and, since histograms were kept, their
counts in fixed bins, and the FPIR curve. Older versions have the summaries only: their distributions
are drawn from the summaries and say so. The FPIR at the version's threshold is exact for them too
(it follows from the stored expected FPIR and gallery size); the threshold each size would need was not
recorded. ``metrics["holdout"]`` is the held-out check (``facelogin.pipeline.decide.holdout_metrics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

from facelogin.models import ClassifierVersion
from facelogin.pipeline.calibrate import FPIR_CURVE_SIZES


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


@dataclass(frozen=True)
class ScoreSummary:
    n: int
    mean: float | None
    min: float | None
    p01: float | None
    p50: float | None
    p99: float | None
    max: float | None
    counts: list[int] | None  # per histogram bin; None when not recorded

    @classmethod
    def of(cls, stats: dict | None) -> ScoreSummary:
        stats = stats or {}
        counts = stats.get("histogram")
        return cls(
            n=int(stats.get("n") or 0),
            mean=_number(stats.get("mean")),
            min=_number(stats.get("min")),
            p01=_number(stats.get("p01")),
            p50=_number(stats.get("p50")),
            p99=_number(stats.get("p99")),
            max=_number(stats.get("max")),
            counts=[int(c) for c in counts] if isinstance(counts, list) and counts else None,
        )


@dataclass(frozen=True)
class Distributions:
    threshold: float
    verify_threshold: float | None
    genuine: ScoreSummary
    impostor: ScoreSummary
    genuine_accept_rate: float | None  # enrolled photos at or above the threshold (leave-one-out)
    per_comparison_fmr: float | None  # the fitted chance one impostor comparison reaches the threshold
    bins_start: float
    bin_width: float

    @property
    def recorded(self) -> bool:
        """Whether the histograms were stored (versions trained before they were have summaries only)."""
        return self.genuine.counts is not None and self.impostor.counts is not None

    def bin_edges(self) -> list[float]:
        count = len(self.genuine.counts or self.impostor.counts or [])
        return [round(self.bins_start + i * self.bin_width, 6) for i in range(count + 1)]


@dataclass(frozen=True)
class FpirPoint:
    gallery_size: int
    fpir: float  # chance a stranger's frame matches some student at this version's threshold
    threshold_for_target: float | None  # the threshold that would hold the target at this size


@dataclass(frozen=True)
class FpirCurve:
    points: list[FpirPoint]
    target: float
    gallery_size: int
    expected: float  # at the version's own gallery size
    measured: float | None  # enrolled photos whose best other student reaches the threshold
    thresholds_recorded: bool


@dataclass(frozen=True)
class Holdout:
    frames: int
    rank1_accuracy: float | None
    gallery_rank1_accuracy: float | None
    genuine_accept_rate: float | None
    wrong_accept_rate: float | None
    required_rank1_accuracy: float  # FACELOGIN_MIN_HOLDOUT_ACCURACY now
    measured_on_version: int | None  # an incremental version carries the check of the full retrain it builds on
    train_embeddings: int | None

    @property
    def passed(self) -> bool | None:
        return None if self.rank1_accuracy is None else self.rank1_accuracy >= self.required_rank1_accuracy


@dataclass(frozen=True)
class VersionFigures:
    distributions: Distributions | None
    fpir: FpirCurve | None
    holdout: Holdout | None


def classifier_version_figures(*, version: ClassifierVersion) -> VersionFigures:
    calibration = version.thresholds or {}
    metrics = version.metrics or {}
    return VersionFigures(
        distributions=_distributions(calibration),
        fpir=_fpir_curve(calibration, version.gallery_students),
        holdout=_holdout(metrics),
    )


def _distributions(calibration: dict) -> Distributions | None:
    threshold = _number(calibration.get("threshold", calibration.get("similarity")))
    if threshold is None or "genuine" not in calibration or "impostor" not in calibration:
        return None
    bins = calibration.get("histogram_bins") or {}
    size = int(calibration.get("gallery_size") or 0)
    expected = _number(calibration.get("expected_fpir"))
    return Distributions(
        threshold=threshold,
        verify_threshold=_number(calibration.get("verify_threshold")),
        genuine=ScoreSummary.of(calibration.get("genuine")),
        impostor=ScoreSummary.of(calibration.get("impostor")),
        genuine_accept_rate=_number(calibration.get("genuine_accept_rate")),
        per_comparison_fmr=_per_comparison(expected, size) if expected is not None and size else None,
        bins_start=_number(bins.get("start")) if bins else -1.0,
        bin_width=_number(bins.get("width")) if bins else 0.02,
    )


def _per_comparison(fpir: float, gallery_size: int) -> float:
    """Inverts FPIR = 1 - (1 - FMR)^N (facelogin.pipeline.calibrate)."""
    if fpir >= 1:
        return 1.0
    return -math.expm1(math.log1p(-fpir) / max(gallery_size, 1))


def _fpir_at(fmr: float, gallery_size: int) -> float:
    if fmr >= 1:
        return 1.0
    return -math.expm1(gallery_size * math.log1p(-fmr))


def _fpir_curve(calibration: dict, gallery_students: int) -> FpirCurve | None:
    expected = _number(calibration.get("expected_fpir"))
    if expected is None:
        return None
    size = int(calibration.get("gallery_size") or gallery_students or 1)
    target = _number(calibration.get("target_fpir")) or settings.FACELOGIN["TARGET_FPIR"]
    measured = _number(calibration.get("loo_identification_fpir"))
    stored = calibration.get("fpir_curve")
    if isinstance(stored, list) and stored:
        points = [
            FpirPoint(int(p["gallery_size"]), _number(p.get("fpir")) or 0.0, _number(p.get("threshold_for_target")))
            for p in stored
            if isinstance(p, dict) and "gallery_size" in p
        ]
        return FpirCurve(points, target, size, expected, measured, thresholds_recorded=True)
    fmr = _per_comparison(expected, size)
    sizes = sorted({*FPIR_CURVE_SIZES, size})
    points = [FpirPoint(n, _fpir_at(fmr, n), None) for n in sizes]
    return FpirCurve(points, target, size, expected, measured, thresholds_recorded=False)


def _holdout(metrics: dict) -> Holdout | None:
    holdout = metrics.get("holdout")
    if not isinstance(holdout, dict) or not holdout.get("frames"):
        return None
    incremental = metrics.get("incremental") or {}
    return Holdout(
        frames=int(holdout["frames"]),
        rank1_accuracy=_number(holdout.get("rank1_accuracy")),
        gallery_rank1_accuracy=_number(holdout.get("gallery_rank1_accuracy")),
        genuine_accept_rate=_number(holdout.get("genuine_accept_rate")),
        wrong_accept_rate=_number(holdout.get("wrong_accept_rate")),
        required_rank1_accuracy=settings.FACELOGIN["MIN_HOLDOUT_ACCURACY"],
        measured_on_version=incremental.get("full_version") if incremental else None,
        train_embeddings=holdout.get("train_embeddings"),
    )
