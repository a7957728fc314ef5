"""The presentation-attack detector plug-in: run on every login frame with a face, decided by a threshold."""

from __future__ import annotations

import pytest

from facelogin.pipeline.pad import PresentationAttackDetector, pad_verdict
from tests.pad_plugin import SaturationDetector


def test_a_detector_is_anything_with_a_score_method():
    assert isinstance(SaturationDetector(), PresentationAttackDetector)
    assert not isinstance(object(), PresentationAttackDetector)


def test_the_mean_score_over_the_track_decides_once_there_are_enough_frames():
    assert pad_verdict([0.9, 0.9], 0.5).attack is False  # two frames decide nothing yet
    assert pad_verdict([0.9, 0.8, 0.7], 0.5).attack is True
    assert pad_verdict([0.9, 0.1, 0.1, 0.2], 0.5).attack is False  # one bad frame is not an attack
    assert pad_verdict([0.5, 0.5, 0.5], 0.5).attack is True  # the threshold itself counts


def test_the_analyser_scores_login_frames_not_enrolment_photos(embedder):
    from facelogin.pipeline.analyze import FaceAnalyzer
    from tests.conftest import FACES

    detector = SaturationDetector()
    analyzer = FaceAnalyzer(None, embedder, pad=detector)
    photo = (FACES / "johns" / "John_Schneider" / "000329_00925859.jpg").read_bytes()
    login = analyzer.analyze_bytes(photo, purpose="login")
    assert login.pad_score == pytest.approx(0.9) and detector.frames == 1
    enrol = analyzer.analyze_bytes(photo, purpose="enrol")
    assert enrol.pad_score is None and detector.frames == 1
