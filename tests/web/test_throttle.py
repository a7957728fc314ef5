from __future__ import annotations

import pytest
from django.core.cache import cache

from facelogin.services import throttle


@pytest.fixture(autouse=True)
def _limits(settings):
    cache.clear()
    settings.FACELOGIN = {
        **settings.FACELOGIN,
        "THROTTLE_IP_ATTEMPTS": 3,
        "THROTTLE_SESSION_ATTEMPTS": 2,
        "THROTTLE_STUDENT_ATTEMPTS": 2,
        "THROTTLE_FAILURES_BEFORE_COOLDOWN": 2,
        "THROTTLE_COOLDOWN_SECONDS": 120,
    }
    yield
    cache.clear()


def test_attempts_are_limited_per_ip_across_sessions():
    verdicts = [throttle.attempt_start(ip="10.0.0.1", session_key=f"s{i}") for i in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].scope == "ip" and verdicts[-1].retry_after > 0
    assert throttle.attempt_start(ip="10.0.0.2", session_key="s9").allowed  # another address is unaffected


def test_attempts_are_limited_per_browser_session_across_addresses():
    verdicts = [throttle.attempt_start(ip=f"10.0.1.{i}", session_key="same") for i in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False] and verdicts[-1].scope == "session"


def test_recognitions_of_one_student_are_limited():
    verdicts = [throttle.student_recognised(student_id=7) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False] and verdicts[-1].scope == "student"
    assert throttle.student_recognised(student_id=8).allowed


def test_repeated_failures_start_a_cool_down_for_the_address():
    throttle.attempt_failed(ip="10.0.0.5", session_key="a")
    assert throttle.attempt_start(ip="10.0.0.5", session_key="b").allowed
    throttle.attempt_failed(ip="10.0.0.5", session_key="c")
    verdict = throttle.attempt_start(ip="10.0.0.5", session_key="d")
    assert not verdict.allowed and verdict.scope == "ip" and 0 < verdict.retry_after <= 121
