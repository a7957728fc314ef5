"""A classifier version's admin page: the genuine and impostor distributions with the threshold, the
stranger-match chance against the gallery size and the held-out check, drawn from what training stored,
checked against the gallery they came from; older versions without histograms say so.
"""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from facelogin.models import ClassifierVersion, EnrolmentPhoto
from facelogin.pipeline.calibrate import HISTOGRAM_BIN_WIDTH, HISTOGRAM_BINS, HISTOGRAM_START, impostor_genuine_scores
from facelogin.pipeline.classify import normalise
from facelogin.services import biometrics, training
from facelogin.services.classifier_figures import classifier_version_figures
from facelogin.services.recognition import model_name

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_loaded_model")]


@pytest.fixture
def trained(make_student):
    """A real retrain on 12 students x 5 photos of synthetic embeddings (spread like real ones)."""
    rng = np.random.default_rng(3)
    for i in range(12):
        student = make_student(f"2026F{i:03d}")
        centre = normalise(rng.standard_normal((1, 512)))
        for vector in normalise(centre + 0.045 * rng.standard_normal((5, 512))):
            EnrolmentPhoto.objects.create(
                student=student, state="accepted", model_name=model_name(),
                content_sha256=hashlib.sha256(vector.tobytes()).hexdigest(), embedding=biometrics.seal_embedding(vector),
            )
    version = training.classifier_train(trigger="test", full=True)
    assert version.status == "ready", version.error
    return version


def histogram(values) -> list[int]:
    edges = [HISTOGRAM_START + i * HISTOGRAM_BIN_WIDTH for i in range(HISTOGRAM_BINS + 1)]
    return np.histogram(np.clip(values, edges[0], edges[-1] - 1e-9), bins=edges)[0].tolist()


def test_training_stores_the_score_histograms_and_the_fpir_curve(trained):
    calibration = trained.thresholds
    embeddings, labels = training.gallery_arrays(model_name=model_name())
    genuine, impostor, _best, _sub = impostor_genuine_scores(embeddings, labels)
    # The stored counts are the gallery's own scores, bin for bin (and nothing else: counts only).
    assert calibration["genuine"]["histogram"] == histogram(genuine)
    assert calibration["impostor"]["histogram"] == histogram(impostor)
    assert sum(calibration["genuine"]["histogram"]) == calibration["genuine_pairs"] == len(genuine)
    assert calibration["histogram_bins"] == {"start": HISTOGRAM_START, "width": HISTOGRAM_BIN_WIDTH, "count": HISTOGRAM_BINS}
    curve = {p["gallery_size"]: p for p in calibration["fpir_curve"]}
    assert curve[12]["fpir"] == pytest.approx(calibration["expected_fpir"])
    assert curve[12]["threshold_for_target"] == pytest.approx(calibration["threshold"])
    fpirs = [p["fpir"] for p in calibration["fpir_curve"]]
    assert fpirs == sorted(fpirs)  # a bigger gallery, more chances for a stranger


def test_the_version_page_draws_each_chart_from_what_was_stored(trained, admin_client):
    from facelogin import admin_figures, charts

    html = admin_client.get(f"/admin/facelogin/classifierversion/{trained.pk}/change/").content.decode()
    panels = {p.name: p for p in admin_figures.version_panels(classifier_version_figures(version=trained))}
    assert set(panels) == {"scores", "stranger-chance", "holdout"}
    calibration, holdout = trained.thresholds, trained.metrics["holdout"]

    scores = panels["scores"].draw().axes[0]
    shares = [s.get_data().values for s in scores.patches if hasattr(s, "get_data")]
    for stored in (calibration["genuine"]["histogram"], calibration["impostor"]["histogram"]):
        assert any(np.allclose(v, 100 * np.array(stored) / sum(stored)) for v in shares)
    assert calibration["threshold"] in [line.get_xdata()[0] for line in scores.lines]

    fpir = panels["stranger-chance"].draw().axes[0].lines[0]
    assert list(fpir.get_xdata()) == [p["gallery_size"] for p in calibration["fpir_curve"]]
    stored = [p["fpir"] for p in calibration["fpir_curve"]]
    drawn = list(fpir.get_ydata())
    assert all(d == s for d, s in zip(drawn, stored) if s > 0)  # zeros are drawn at the axis floor

    bars = [p.get_width() for p in panels["holdout"].draw().axes[0].containers[0]]
    assert bars == [holdout["rank1_accuracy"], holdout["gallery_rank1_accuracy"], holdout["genuine_accept_rate"], holdout["wrong_accept_rate"]]

    for name, panel in panels.items():
        url = re.search(rf'<img src="([^"]*/chart/{name}\.svg)"', html).group(1)
        response = admin_client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
        assert response.content == charts.svg(panel.draw())
    assert "not recorded for this version" not in html
    assert f"{holdout['frames']} enrolled photos were held out" in html


def test_an_older_version_without_histograms_draws_its_summary_and_says_so(trained, admin_client):
    old = dict(trained.thresholds)
    for key in ("fpir_curve", "histogram_bins"):
        old.pop(key)
    for key in ("genuine", "impostor"):
        old[key] = {k: v for k, v in old[key].items() if k != "histogram"}
    version = ClassifierVersion.objects.create(
        status="failed", model_name=trained.model_name, classifier="centroid", gallery_students=12, thresholds=old, metrics=trained.metrics
    )
    figures = classifier_version_figures(version=version)
    assert not figures.distributions.recorded and not figures.fpir.thresholds_recorded
    # The chance at the version's own threshold still follows exactly from what was stored.
    at_size = {p.gallery_size: p.fpir for p in figures.fpir.points}
    assert at_size[12] == pytest.approx(trained.thresholds["expected_fpir"], abs=1e-15)
    stored_curve = {p["gallery_size"]: p["fpir"] for p in trained.thresholds["fpir_curve"]}
    for size, value in stored_curve.items():
        assert at_size[size] == pytest.approx(value, rel=1e-6, abs=1e-15)
    html = admin_client.get(f"/admin/facelogin/classifierversion/{version.pk}/change/").content.decode()
    assert "The full distributions were not recorded for this version" in html
    assert "not recorded for this version" in html
    assert admin_client.get(f"/admin/facelogin/classifierversion/{version.pk}/chart/scores.svg").status_code == 200


def test_a_version_that_failed_before_calibrating_has_no_charts(admin_client, db):
    version = ClassifierVersion.objects.create(status="failed", model_name="casia-webface", classifier="centroid", error="too few students")
    html = admin_client.get(f"/admin/facelogin/classifierversion/{version.pk}/change/").content.decode()
    assert 'class="figure-panel"' not in html
    assert admin_client.get(f"/admin/facelogin/classifierversion/{version.pk}/chart/scores.svg").status_code == 404
    assert admin_client.get("/admin/facelogin/classifierversion/999999/chart/scores.svg").status_code == 404


def test_staff_without_the_versions_view_permission_get_no_chart(trained, client):
    staff = get_user_model().objects.create_user("nobody", password="pw-nobody-2026", is_staff=True)
    client.force_login(staff)
    assert client.get(f"/admin/facelogin/classifierversion/{trained.pk}/chart/scores.svg").status_code == 403


def test_the_inverse_of_the_fpir_formula_is_exact_for_small_chances():
    from facelogin.services.classifier_figures import _fpir_at, _per_comparison

    for fpir, size in ((1e-3, 40), (1e-9, 30_000), (0.5, 2)):
        assert _fpir_at(_per_comparison(fpir, size), size) == pytest.approx(fpir, rel=1e-9)
    assert _per_comparison(0.0, 10) == 0.0 and math.isclose(_fpir_at(1.0, 5), 1.0)
