"""The liveness state machine on landmark geometry (real-image sequences: tests/web/test_liveness_frames.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from facelogin.pipeline import liveness
from facelogin.pipeline.types import Detection, Face, FrameAnalysis


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _frame(*, yaw_offset: float = 0.0, width: float = 200.0, x: float = 320.0, embedding=None, faces: int = 1) -> FrameAnalysis:
    """A face whose nose sits ``yaw_offset`` inter-eye distances right of the eyes' midpoint."""
    eye = width * 0.4
    top = 140.0
    left_eye, right_eye = (x - eye / 2, top + 60), (x + eye / 2, top + 60)
    nose = (x + yaw_offset * eye, top + 100)
    mouth = ((x - eye / 3, top + 140), (x + eye / 3, top + 140))
    face = Face(box=(x - width / 2, top, x + width / 2, top + width * 1.2), probability=0.99, landmarks=(left_eye, right_eye, nose, *mouth))
    detection = Detection(faces=(face,) * faces, image_size=(640, 480))
    if embedding is None:
        embedding = np.ones(512, dtype=np.float32) / np.sqrt(512)
    return FrameAnalysis(detection=detection, face=face, quality=None, embedding=embedding)


def _run(check, frames, clock, step=0.2):
    for frame in frames:
        clock.now += step
        check.observe(frame)
    return check.state


def test_a_challenge_always_holds_a_turn_and_distinct_steps():
    for seed in range(200):
        steps = liveness.random_challenge(random.Random(seed))
        assert len(steps) == 2 and len(set(steps)) == 2
        assert set(steps) & set(liveness.TURNS)


def test_a_still_face_never_passes():
    clock = Clock()
    check = liveness.LivenessCheck(("turn_left", "turn_right"), clock=clock)
    state = _run(check, [_frame()] * 100, clock)
    assert state.status == "failed" and state.reason == "timeout"


def test_turning_left_then_right_passes():
    clock = Clock()
    check = liveness.LivenessCheck(("turn_left", "turn_right"), clock=clock)
    frames = [_frame(), _frame(yaw_offset=0.15), _frame(yaw_offset=0.4), _frame(), _frame(yaw_offset=-0.4)]
    assert _run(check, frames, clock).status == "passed"


def test_a_movement_that_was_not_asked_for_fails_the_challenge():
    """A recording of every movement, or a picture swapped for its mirror image, shows turns nobody asked for."""
    clock = Clock()
    check = liveness.LivenessCheck(("turn_left", "turn_right"), clock=clock)
    state = _run(check, [_frame(), _frame(yaw_offset=-0.4), _frame()], clock)
    assert state.status == "failed" and state.reason == "wrong_movement" and state.step_index == 0
    clock = Clock()
    check = liveness.LivenessCheck(("move_closer", "turn_left"), clock=clock)
    assert _run(check, [_frame(), _frame(yaw_offset=0.4)], clock).reason == "wrong_movement"
    # Still turned from the step just done is not a wrong movement: the next step may begin from there.
    clock = Clock()
    check = liveness.LivenessCheck(("turn_right", "turn_left"), clock=clock)
    frames = [_frame(), _frame(yaw_offset=-0.4), _frame(yaw_offset=-0.4), _frame(), _frame(yaw_offset=0.4)]
    assert _run(check, frames, clock).status == "passed"


def test_a_photo_and_its_mirror_image_cannot_make_a_turn():
    """The baseline must be nearly frontal, so yaw b and its mirror -b differ by less than a turn."""
    clock = Clock()
    check = liveness.LivenessCheck(("turn_right", "move_closer"), clock=clock)
    slightly_turned = 0.1  # yaw ~ +11 on the landmark scale: frontal enough to the eye, not to the check
    state = _run(check, [_frame(yaw_offset=slightly_turned), _frame(yaw_offset=-slightly_turned)] * 5, clock)
    assert state.baseline_yaw is None and state.step_index == 0 and state.status == "pending"
    clock = Clock()
    check = liveness.LivenessCheck(("turn_right", "move_closer"), clock=clock)
    barely = 0.055  # yaw ~ +6: inside the frontal band, but its mirror (~ -6) is not a whole turn away
    state = _run(check, [_frame(yaw_offset=barely), _frame(yaw_offset=-barely)] * 5, clock)
    assert state.baseline_yaw is not None and state.step_index == 0


def test_moving_closer_and_back_are_measured_from_the_face_width():
    clock = Clock()
    check = liveness.LivenessCheck(("move_closer", "turn_right"), clock=clock)
    frames = [_frame(width=200), _frame(width=230), _frame(width=260), _frame(width=260, yaw_offset=-0.4)]
    assert _run(check, frames, clock).status == "passed"
    clock = Clock()
    check = liveness.LivenessCheck(("move_back", "turn_left"), clock=clock)
    frames = [_frame(width=200), _frame(width=180), _frame(width=160), _frame(width=160, yaw_offset=0.4)]
    assert _run(check, frames, clock).status == "passed"


def test_a_different_person_half_way_breaks_the_track_and_restarts_the_challenge():
    clock = Clock()
    me, other = np.zeros(512, np.float32), np.zeros(512, np.float32)
    me[0], other[1] = 1.0, 1.0
    check = liveness.LivenessCheck(("turn_left", "turn_right"), clock=clock)
    state = _run(check, [_frame(embedding=me), _frame(yaw_offset=0.4, embedding=me)], clock)
    assert state.step_index == 1
    continued = check.observe(_frame(embedding=other))
    assert not continued and check.state.step_index == 0 and check.state.track_breaks == 1


def test_a_jumping_face_or_a_second_face_breaks_the_track():
    clock = Clock()
    check = liveness.LivenessCheck(("turn_left", "turn_right"), clock=clock)
    _run(check, [_frame(x=200)], clock)
    assert check.observe(_frame(x=520)) is False
    assert check.observe(_frame(x=520, faces=2)) is False


def test_time_lost_to_a_restart_is_not_given_back():
    clock = Clock()
    config = liveness.LivenessConfig(seconds_per_step=1.0)
    check = liveness.LivenessCheck(("turn_left", "turn_right"), config, clock=clock)
    _run(check, [_frame()], clock)
    clock.now += 1.5
    check.observe(_frame(x=600))  # breaks the track
    _run(check, [_frame(x=600), _frame(x=600, yaw_offset=0.4)], clock, step=0.3)
    assert check.state.status == "failed" and check.state.reason == "timeout"


def test_unknown_steps_are_refused():
    with pytest.raises(ValueError):
        liveness.LivenessCheck(("jump",))
