"""How likely a stranger is to be taken for an enrolled student, from the active version's calibration.

In ``identify`` mode a stranger's face is compared with every enrolled student, so the chance that it
matches someone grows with the gallery; the threshold is calibrated to keep it at the target
(FACELOGIN_TARGET_FPIR), unless a ceiling (FACELOGIN_MAX_THRESHOLD) stops it or the enrolled students
themselves already match each other more often. Then ``verify`` mode (student number first, one
comparison) keeps the target, and the admin recommends it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

from facelogin.models import ClassifierVersion


@dataclass(frozen=True)
class StrangerRisk:
    mode: str
    students: int
    target: float
    threshold: float
    identify_expected: float  # per frame, from the fitted impostor tail at this gallery size
    identify_measured: float  # enrolled photos whose best OTHER student reaches the threshold
    verify_threshold: float | None
    verify_expected: float | None  # per frame, one comparison with the claimed student
    ceiling_binds: bool

    @property
    def identify_chance(self) -> float:
        """The pessimistic of the model's expectation and what the gallery itself shows."""
        return max(self.identify_expected, self.identify_measured)

    @property
    def current_chance(self) -> float:
        if self.mode == "verify" and self.verify_expected is not None:
            return self.verify_expected
        return self.identify_chance

    @property
    def recommend_verify(self) -> bool:
        return self.mode == "identify" and self.identify_chance > self.target


def _number(value, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


def stranger_risk(version: ClassifierVersion | None = None) -> StrangerRisk | None:
    """For ``version`` (default: the active one); None when there is no calibrated version."""
    if version is None:
        version = ClassifierVersion.objects.filter(is_active=True).only("thresholds", "gallery_students").first()
    calibration = (version.thresholds or {}) if version is not None else {}
    if "expected_fpir" not in calibration:
        return None
    threshold = _number(calibration.get("threshold", calibration.get("similarity")))
    ceiling = _number(calibration.get("ceiling"), 1.0)
    return StrangerRisk(
        mode=settings.FACELOGIN["MODE"],
        students=int(calibration.get("gallery_size") or version.gallery_students),
        target=_number(calibration.get("target_fpir"), settings.FACELOGIN["TARGET_FPIR"]),
        threshold=threshold,
        identify_expected=_number(calibration.get("expected_fpir")),
        identify_measured=_number(calibration.get("loo_identification_fpir")),
        verify_threshold=calibration.get("verify_threshold"),
        verify_expected=calibration.get("verify_fmr"),
        ceiling_binds=ceiling < 1.0 and threshold >= ceiling - 1e-9,
    )
