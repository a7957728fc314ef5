"""Active liveness: a random short head-movement challenge, checked from MTCNN's box and landmarks.

A printed photo or a phone held to the camera can be moved closer, but it cannot turn its head: the
nose tip stands out of the face's plane, so a real head turn moves it sideways against the eyes by a
large fraction of the inter-eye distance, while a tilted flat picture keeps that ratio. Every
challenge therefore has at least one turn. The steps must happen in order, within a time limit, on
one continuous face track: the face must stay in view, must not jump, and consecutive embeddings
must look like the same person, so a photo cannot answer the identity question while someone else
does the movements. A deliberate turn that was not asked for fails the challenge: a recording that
shows every movement in turn does not pass whatever is asked.

Directions are the student's own: "turn left" means towards their left, which in the camera's
(unmirrored) image moves the nose towards the image's right, i.e. yaw increases.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .quality import estimate_pose
from .types import FrameAnalysis

TURN_LEFT, TURN_RIGHT, MOVE_CLOSER, MOVE_BACK = "turn_left", "turn_right", "move_closer", "move_back"
TURNS = (TURN_LEFT, TURN_RIGHT)
STEPS = (TURN_LEFT, TURN_RIGHT, MOVE_CLOSER, MOVE_BACK)

PENDING, PASSED, FAILED = "pending", "passed", "failed"


@dataclass(frozen=True)
class LivenessConfig:
    # A frontal face sits within about +-13 "degrees" of yaw on our landmark scale; a deliberate turn reaches
    # 20-35. 15 asks for a clear turn without asking for a profile (which MTCNN may lose).
    turn_degrees: float = 15.0
    # The baseline a turn is measured from must be nearly frontal: below half a turn, so a picture and
    # its mirror image (yaw b and -b) can never differ by a whole turn. bench.attacks found that at 14
    # (real frontal photos reach +-13) one photo of a slightly turned head and its mirror passed a turn.
    frontal_degrees: float = 7.0
    closer_ratio: float = 1.2  # face width grows by 20 %
    back_ratio: float = 0.83  # ... or shrinks by 17 %
    seconds_per_step: float = 7.0
    max_gap_seconds: float = 2.5  # longer without a face breaks the track
    max_jump: float = 0.6  # centre movement between frames, in face widths
    track_similarity: float = 0.3  # consecutive embeddings of one person stay above this
    challenge_length: int = 2


def random_challenge(rng: random.Random | None = None, length: int = 2) -> tuple[str, ...]:
    """``length`` distinct steps in random order, at least one of them a turn."""
    rng = rng or random.SystemRandom()
    steps = [rng.choice(TURNS)]
    others = [step for step in STEPS if step not in steps]
    steps += rng.sample(others, max(0, length - 1))
    rng.shuffle(steps)
    return tuple(steps)


@dataclass
class LivenessState:
    steps: tuple[str, ...]
    status: str = PENDING
    step_index: int = 0
    reason: str = ""
    baseline_yaw: float | None = None
    baseline_width: float | None = None
    started_at: float | None = None
    track_breaks: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def current_step(self) -> str | None:
        return self.steps[self.step_index] if self.status == PENDING and self.step_index < len(self.steps) else None

    def report(self) -> dict:
        return {
            "steps": list(self.steps),
            "status": self.status,
            "completed": self.step_index,
            "reason": self.reason,
            "track_breaks": self.track_breaks,
        }


class LivenessCheck:
    """Feed it every analysed frame; it says whether the challenge is passed, pending or failed.

    ``observe`` returns True when the frame continued the face track, False when the track broke (the
    caller then discards identity evidence gathered on the old track, so evidence and movement come
    from one continuous face).
    """

    def __init__(
        self,
        steps: Sequence[str],
        config: LivenessConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unknown = set(steps) - set(STEPS)
        if unknown or not steps:
            raise ValueError(f"unknown challenge steps: {sorted(unknown)}")
        self.config = config or LivenessConfig()
        self.state = LivenessState(steps=tuple(steps))
        self._clock = clock
        self._last_center: tuple[float, float] | None = None
        self._last_width: float | None = None
        self._last_embedding: np.ndarray | None = None
        self._last_seen: float | None = None
        # Back near the baseline since the last completed step: only then does an unrequested turn count
        # (a student still turned from the step just done is not making a wrong movement).
        self._settled = True

    @property
    def passed(self) -> bool:
        return self.state.status == PASSED

    def deadline(self) -> float | None:
        if self.state.started_at is None:
            return None
        return self.state.started_at + self.config.seconds_per_step * len(self.state.steps)

    def observe(self, analysis: FrameAnalysis) -> bool:
        state, config, now = self.state, self.config, self._clock()
        if state.status != PENDING:
            return self._continues(analysis, now) if analysis.face is not None else True
        deadline = self.deadline()
        if deadline is not None and now > deadline:
            state.status, state.reason = FAILED, "timeout"
            return True
        face = analysis.face
        if face is None:
            if self._last_seen is not None and now - self._last_seen > config.max_gap_seconds:
                self._restart("face_lost")
                return False
            return True
        continuous = self._continues(analysis, now)
        if not continuous:
            self._restart("track_broken")
        image_width = max(analysis.detection.image_size[0], 1)
        width = face.width / image_width
        yaw = analysis.quality.pose.yaw if analysis.quality is not None else estimate_pose(face).yaw
        if state.baseline_yaw is None:
            if abs(yaw) <= config.frontal_degrees:
                state.baseline_yaw, state.baseline_width = yaw, width
                if state.started_at is None:
                    state.started_at = now
            return continuous
        turned = yaw - state.baseline_yaw
        if abs(turned) < config.turn_degrees / 2:
            self._settled = True
        if self._step_done(state.current_step, turned, width):
            state.history.append({"step": state.current_step, "yaw": round(yaw, 1), "width": round(width, 3)})
            state.step_index += 1
            self._settled = False
            if state.step_index >= len(state.steps):
                state.status = PASSED
        elif self._settled and self._wrong_movement(state.current_step, turned):
            state.history.append({"unrequested": "turn", "yaw": round(yaw, 1)})
            state.status, state.reason = FAILED, "wrong_movement"
        return continuous

    def _wrong_movement(self, step: str | None, turned: float) -> bool:
        """A whole turn the current step did not ask for."""
        if abs(turned) < self.config.turn_degrees:
            return False
        if step == TURN_LEFT:
            return turned < 0
        if step == TURN_RIGHT:
            return turned > 0
        return True  # a turn while asked to move closer or back

    def _step_done(self, step: str | None, turned: float, width: float) -> bool:
        state, config = self.state, self.config
        if step == TURN_LEFT:
            return turned >= config.turn_degrees
        if step == TURN_RIGHT:
            return turned <= -config.turn_degrees
        if step == MOVE_CLOSER:
            return width >= state.baseline_width * config.closer_ratio
        if step == MOVE_BACK:
            return width <= state.baseline_width * config.back_ratio
        return False

    def _continues(self, analysis: FrameAnalysis, now: float) -> bool:
        """Is this face the same one as in the previous face frame? Updates the track either way."""
        face, config = analysis.face, self.config
        continuous = True
        if self._last_center is not None:
            jump = math.dist(face.center, self._last_center) / max(self._last_width or face.width, 1.0)
            gap = now - (self._last_seen or now)
            if jump > config.max_jump or gap > config.max_gap_seconds:
                continuous = False
        if continuous and analysis.embedding is not None and self._last_embedding is not None:
            if float(np.dot(analysis.embedding, self._last_embedding)) < config.track_similarity:
                continuous = False
        if analysis.detection.count > 1:
            continuous = False  # a second face in view: someone could be swapping pictures
        self._last_center, self._last_width, self._last_seen = face.center, face.width, now
        if analysis.embedding is not None:
            self._last_embedding = analysis.embedding
        return continuous

    def _restart(self, reason: str) -> None:
        state = self.state
        state.track_breaks += 1
        state.reason = reason
        state.step_index = 0
        state.baseline_yaw = state.baseline_width = None
        state.history.clear()
        self._settled = True
        # The clock keeps running from the first baseline: restarting does not buy more time.
