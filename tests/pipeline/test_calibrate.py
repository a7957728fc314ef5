"""Threshold calibration on the enrolled gallery, on synthetic embeddings (no models, no database)."""

from __future__ import annotations

import math
import pickle
import time

import numpy as np
import pytest

from facelogin.pipeline.calibrate import Calibration, calibrate, impostor_genuine_scores
from facelogin.pipeline.classify import Gallery, normalise


def clusters(students: int, photos: int, *, noise: float = 0.7, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((students, 512)))
    X = np.repeat(centres, photos, axis=0) + noise * normalise(rng.standard_normal((students * photos, 512)))
    return normalise(X), [f"stu{i:05d}" for i in np.repeat(np.arange(students), photos)]


def test_it_counts_every_impostor_and_genuine_pair() -> None:
    X, y = clusters(12, 5)
    genuine, impostor, best, subsampled = impostor_genuine_scores(X, y)
    assert len(genuine) == 60  # every photo against the rest of its own student's photos
    assert len(impostor) == 60 * 11  # every photo against every OTHER student
    assert len(best) == 60 and not subsampled
    # Leave-one-out: a photo is never compared with itself (that would score 1.0).
    assert genuine.max() < 0.99
    g = Gallery.from_arrays(X, y)
    S = g.similarities(X)
    own = np.array([g.index_of(v) for v in y])
    others = S.copy()
    others[np.arange(60), own] = -np.inf
    np.testing.assert_allclose(np.sort(best), np.sort(others.max(axis=1)), atol=1e-6)


def test_the_report_says_how_the_threshold_was_reached() -> None:
    X, y = clusters(20, 5)
    cal = calibrate(X, y, target_fpir=0.001)
    assert cal.gallery_size == 20 and cal.identities == 20 and cal.embeddings == 100
    assert cal.impostor_pairs == 100 * 19 and cal.genuine_pairs == 100
    assert cal.per_comparison_fmr == pytest.approx(0.001 / 20, rel=1e-3)
    assert cal.threshold == max(cal.components.values())
    assert cal.threshold >= cal.impostor.max  # too few pairs for 5e-5: nothing seen may pass
    assert cal.expected_fpir <= cal.target_fpir
    assert 0 <= cal.genuine_accept_rate <= 1
    assert cal.genuine.mean > cal.impostor.mean
    d = cal.to_dict()
    assert {"threshold", "expected_fpir", "genuine_accept_rate", "impostor", "genuine", "components"} <= d.keys()


def test_the_threshold_never_goes_below_the_safety_floor() -> None:
    X, y = clusters(10, 5, noise=0.3)
    cal = calibrate(X, y, floor=0.6)
    assert cal.threshold >= 0.6
    assert cal.components["floor"] == 0.6


def test_the_threshold_rises_with_the_gallery_size_for_the_same_target() -> None:
    X, y = clusters(40, 5)
    thresholds = [calibrate(X, y, gallery_size=n, floor=0.0).threshold for n in (10, 100, 1_000, 30_000)]
    assert thresholds == sorted(thresholds) and thresholds[0] < thresholds[-1]
    # The stored tail answers the same question without rescoring.
    cal = calibrate(X, y, floor=0.0)
    again = [cal.threshold_for(gallery_size=n) for n in (10, 100, 1_000, 30_000)]
    np.testing.assert_allclose(again, thresholds, atol=1e-6)
    # And a gallery calibrated for 30,000 students keeps ~1e-3 FPIR at that size.
    t = cal.threshold_for(gallery_size=30_000)
    assert cal.fpir_at(t, 30_000) <= 0.001 + 1e-9


def test_a_stricter_target_gives_a_higher_threshold() -> None:
    X, y = clusters(40, 5)
    cal = calibrate(X, y, floor=0.0, target_fpir=0.01)
    assert cal.threshold_for(target_fpir=0.0001) > cal.threshold_for(target_fpir=0.01)


def test_a_fitted_tail_is_used_when_pairs_are_too_few_for_the_quantile() -> None:
    X, y = clusters(60, 5)
    cal = calibrate(X, y, floor=0.0, gallery_size=1_000)
    # 17,700 pairs cannot show an FMR of 1e-6; the tail fits reach beyond the highest score seen.
    assert cal.tail.gpd_ok
    assert math.isfinite(cal.components["normal"]) and math.isfinite(cal.components["gpd"])
    assert cal.threshold >= cal.impostor.max


def test_it_separates_what_it_is_told_and_rejects_nonsense() -> None:
    X, y = clusters(2, 3)
    with pytest.raises(ValueError):
        calibrate(X[:3], y[:3])  # one student: no impostors
    with pytest.raises(ValueError):
        calibrate(X, y, target_fpir=0)


def test_a_calibration_pickles() -> None:
    X, y = clusters(8, 4)
    cal = calibrate(X, y)
    again = pickle.loads(pickle.dumps(cal))
    assert isinstance(again, Calibration) and again.threshold == cal.threshold
    assert again.threshold_for(gallery_size=500) == cal.threshold_for(gallery_size=500)


@pytest.mark.slow
def test_big_galleries_are_subsampled_deterministically_and_fast() -> None:
    X, y = clusters(30_000, 5, noise=0.7)
    t = time.perf_counter()
    a = calibrate(X, y, seed=3)
    elapsed = time.perf_counter() - t
    b = calibrate(X, y, seed=3)
    assert a.subsampled and a.threshold == b.threshold and a.impostor_pairs == b.impostor_pairs
    assert a.gallery_size == 30_000 and a.impostor_pairs >= 1_000_000
    assert elapsed < 30, f"{elapsed:.1f} s"


def test_the_tail_model_is_selectable_and_reported() -> None:
    X, y = clusters(40, 5)
    gpd = calibrate(X, y, floor=0.0)
    normal = calibrate(X, y, floor=0.0, method="normal")
    both = calibrate(X, y, floor=0.0, method="max")
    assert gpd.method == "gpd" and normal.method == "normal"
    assert gpd.components == normal.components  # every fit is reported whichever is trusted
    assert both.threshold == max(gpd.threshold, normal.threshold)
    with pytest.raises(ValueError):
        calibrate(X, y, method="magic")


def test_a_ceiling_holds_the_threshold_down_and_the_report_shows_the_cost() -> None:
    X, y = clusters(20, 5)
    free = calibrate(X, y, target_fpir=0.001)
    capped = calibrate(X, y, target_fpir=0.001, ceiling=free.impostor.max - 0.05)
    assert capped.threshold == pytest.approx(free.impostor.max - 0.05)
    assert capped.threshold < free.threshold
    assert capped.expected_fpir > capped.target_fpir >= free.expected_fpir
    assert capped.to_dict()["ceiling"] == capped.ceiling


def test_verification_needs_a_lower_threshold_than_identification_for_the_same_target() -> None:
    X, y = clusters(200, 5)
    cal = calibrate(X, y, target_fpir=0.01, floor=0.0)
    threshold, fmr = cal.verification()
    assert threshold < cal.threshold  # one comparison, not 200
    assert fmr <= 0.01 + 1e-9 and fmr == pytest.approx(cal.fmr_at(threshold))
    assert cal.to_dict()["verify_threshold"] == threshold
