"""FACELOGIN_PAD_DETECTOR: a plug-in is loaded by name, and a wrong name stops face sign-in with a clear reason."""

from __future__ import annotations

import pytest

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services import recognition


def test_no_detector_by_default(settings):
    assert recognition.pad_detector() is None


def test_a_detector_is_loaded_from_its_factory(settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "PAD_DETECTOR": "tests.pad_plugin:factory"}
    assert type(recognition.pad_detector()).__name__ == "SaturationDetector"


@pytest.mark.parametrize("spec, reason", [("tests.nothing_here:factory", "pad_missing"), ("tests.pad_plugin:not_a_detector", "pad_invalid")])
def test_a_wrong_detector_is_refused_with_its_reason(settings, spec, reason):
    settings.FACELOGIN = {**settings.FACELOGIN, "PAD_DETECTOR": spec}
    with pytest.raises(ModelUnavailable) as refused:
        recognition.pad_detector()
    assert refused.value.details["reason"] == reason and spec in str(refused.value)
