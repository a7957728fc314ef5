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


def test_failures_under_a_claim_alone_never_cool_the_student_down():
    for index in range(5):  # verify mode: five addresses claim student 7 and fail
        throttle.attempt_failed(ip=f"10.0.2.{index}", session_key=f"c{index}")
    assert throttle.attempt_start(ip="10.0.3.1", session_key="own", student="7").allowed
    assert throttle.student_recognised(student_id=7).allowed


def test_failures_after_the_face_was_recognised_cool_that_student_down_from_anywhere():
    throttle.attempt_failed(ip="10.0.4.1", session_key="p1", recognised="7")  # e.g. a photo of 7: liveness failed
    throttle.attempt_failed(ip="10.0.4.2", session_key="p2", recognised="7")
    verdict = throttle.attempt_start(ip="10.0.4.3", session_key="p3", student="7")  # verify mode, claiming 7
    assert not verdict.allowed and verdict.scope == "student"
    refused = throttle.student_recognised(student_id=7)  # identify mode: refused once recognised
    assert not refused.allowed and refused.scope == "student" and refused.retry_after > 0
    assert throttle.student_recognised(student_id=8).allowed


def test_an_abandoned_attempt_counts_only_when_it_sent_frames():
    assert not throttle.attempt_abandoned(ip="10.0.5.1", session_key="a", frames=0)
    assert not throttle.attempt_abandoned(ip="10.0.5.1", session_key="a", frames=0)
    assert throttle.attempt_start(ip="10.0.5.1", session_key="a").allowed
    assert throttle.attempt_abandoned(ip="10.0.5.1", session_key="a", frames=2)
    assert throttle.attempt_abandoned(ip="10.0.5.1", session_key="a", frames=1)
    assert not throttle.attempt_start(ip="10.0.5.1", session_key="a").allowed


def test_a_timeout_while_the_server_held_the_frames_is_not_the_students_failure():
    assert throttle.ending_counts(server_seconds=2.0, attempt_seconds=30)
    assert not throttle.ending_counts(server_seconds=20.0, attempt_seconds=30)
