"""Active liveness: two head turns asked for at moments the server picks, judged from the face's 3-D motion,
with the screen lighting the face in random colours meanwhile.

What a person in front of the camera does that the easy attacks cannot:

* **Turns a 3-D head.** Every challenge is two turns, one each way, in random order. A turn is measured
  as parallax against a baseline face mesh (``headpose``: the nose moves against the cheeks): a photo
  turned, tilted or bent in front of the camera moves as a plane (a homography), never completes a turn,
  and is refused by the rigid-versus-planar test at the end of each turn.
* **Turns continuously, at human speed, as one face.** No faster than ``max_turn_speed`` between
  consecutive frames, on ONE face track: the face must not jump aside, vanish, split in two, or become
  someone else between frames (consecutive embeddings at least ``track_similarity`` alike). A print
  swapped for another (a turned photo of the student, its mirror image, the next page of a flip-book) is
  seen being swapped: two faces, or a face cut by the new print's edge, for a frame or more.
* **Reacts to prompts it could not foresee.** Each turn is asked for at a random moment; a movement before
  the prompt, or sooner after it than a person can react, fails. A recording does not know the moments.
* **Reflects the screen** (``flash``): the page shows random colours; a face reflects them, a screen
  playing a recording does not (it glows with its own light).

The caller (facelogin.services.face_attempts) also checks that every frame of the track is the same
student (the identity part), so someone else's head cannot do the movements for a photo's identity.

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

from .flash import NEUTRAL, FlashConfig, FlashSchedule
from .headpose import motion, mesh_yaw
from .quality import estimate_pose
from .types import FrameAnalysis

TURN_LEFT, TURN_RIGHT = "turn_left", "turn_right"
TURNS = STEPS = (TURN_LEFT, TURN_RIGHT)
# What the page shows besides a turn: look at the camera (before the first prompt, and while the
# colours finish), hold still (between the two turns, until the second prompt).
LOOK, HOLD = "look", "hold"

PENDING, PASSED, FAILED = "pending", "passed", "failed"
SIGN = {TURN_LEFT: 1.0, TURN_RIGHT: -1.0}

# Phases.
BASELINE, WAITING, PROMPTED, FLASHING, DONE = "baseline", "waiting", "prompted", "flashing", "done"


@dataclass(frozen=True)
class LivenessConfig:
    # Fitted yaw (headpose degrees, ~0.75 of a real head's) from the baseline that completes a turn: about
    # 16 real degrees, a comfortable glance aside.
    turn_degrees: float = 12.0
    # A turn has started: this far from where the head was at the prompt (the median of its last three
    # frames: a turned head's fitted yaw wobbles by a few degrees from frame to frame).
    onset_degrees: float = 5.0
    start_degrees: float = 2.0  # ... and a frame this far along counts as inside the turn (its slow start)
    frontal_degrees: float = 12.0  # |MTCNN yaw| of a baseline frame
    baseline_frames: int = 2  # consecutive still, frontal frames make the baseline
    still_degrees: float = 3.0  # ... agreeing within this
    prompt_delay_s: tuple[float, float] = (0.05, 0.3)  # random wait before each prompt
    min_reaction_s: float = 0.15  # no one starts turning sooner after seeing a prompt
    respond_s: float = 3.5  # a prompt must be answered (the turn completed) within this
    # Fastest turn between consecutive face frames while the turns are asked for, in fitted degrees a
    # second (~290 real degrees a second, a brisk head turn's peak), allowed for at least a tenth of a
    # second: a picture swapped for a strongly turned one jumps further.
    max_turn_speed: float = 220.0
    # Frames strictly inside a turn (between its start and its completion). 0: at the 5-10 frames a second
    # a webcam page sends over the network, a brisk turn crosses the band between two frames (bench.attacks
    # measured a quarter of genuine turns so at 1). The swap of pictures this would catch is seen anyway:
    # a print swapped breaks the face track, a tablet does not reflect the portal's colours.
    min_transition_frames: int = 0
    max_gap_s: float = 1.2  # longer without a face breaks the track
    max_jump: float = 0.6  # face centre movement between frames, in face widths
    # Consecutive embeddings of one face track stay above this: the same person (a turn's frames, blurred,
    # measured 0.66-0.99 apart; different people mostly under 0.4). Whether it is the same CAPTURE (not a
    # photo of them swapped in) is the flash check's and the turn geometry's question.
    track_similarity: float = 0.5
    max_rigid_residual: float = 0.035  # at a completed turn: the rigid 3-D motion explains the points
    # ... far better than any flat-picture motion does: a head turned 12-20 degrees measured 1.6-4.0 (once
    # 1.57, a rendered head at the threshold), pictures turned flat 0.5-0.9.
    min_parallax_ratio: float = 1.3
    seconds: float = 15.0  # the whole challenge, from its first face frame
    flash: FlashConfig | None = field(default_factory=FlashConfig)
    flash_max_frames: int = 50  # colour readings before a failing reflection is final (a weak one needs more)


def random_challenge(rng: random.Random | None = None) -> tuple[str, ...]:
    """Both turns, in random order."""
    rng = rng or random.SystemRandom()
    return (TURN_LEFT, TURN_RIGHT) if rng.random() < 0.5 else (TURN_RIGHT, TURN_LEFT)


@dataclass
class LivenessState:
    steps: tuple[str, ...]
    status: str = PENDING
    step_index: int = 0
    reason: str = ""
    phase: str = BASELINE
    track_breaks: int = 0
    started_at: float | None = None
    baseline_at: float | None = None
    passed_at: float | None = None
    history: list[dict] = field(default_factory=list)
    flash: dict = field(default_factory=dict)
    # The head's fitted yaw per face frame after the baseline, with its time from the baseline (the audit
    # row shows how a challenge went; no image or landmark is kept).
    trace: list[tuple[float, float]] = field(default_factory=list)

    @property
    def current_step(self) -> str | None:
        """What the page asks for now: a turn, or LOOK / HOLD while the server waits to prompt."""
        if self.status != PENDING:
            return None
        if self.phase == PROMPTED:
            return self.steps[self.step_index]
        if self.phase == WAITING and self.step_index > 0:
            return HOLD
        return LOOK

    def report(self) -> dict:
        return {
            "steps": list(self.steps),
            "status": self.status,
            "completed": self.step_index,
            "reason": self.reason,
            "track_breaks": self.track_breaks,
            "turns": self.history,
            "flash": self.flash,
            "trace": self.trace[-60:],
        }


class LivenessCheck:
    """Feed it every analysed frame in order (``observe``) and send the page ``prompt()`` and ``colour()``
    with each answer.

    ``observe`` returns True when the frame continued the face track, False when a new track started
    (the caller then discards identity evidence gathered on the old track). Once the first turn has been
    asked for, a broken track fails the challenge instead of restarting it: a restart would let an
    attacker try the prompt's timing again, or swap pictures behind a moment without a face.
    """

    def __init__(
        self,
        steps: Sequence[str],
        config: LivenessConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        unknown = set(steps) - set(STEPS)
        if unknown or not steps:
            raise ValueError(f"unknown challenge steps: {sorted(unknown)}")
        self.config = config or LivenessConfig()
        self.state = LivenessState(steps=tuple(steps))
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        self.flash = FlashSchedule(self.config.flash, self._rng) if self.config.flash is not None else None
        self._answers = 0  # answers sent: the flash colour of answer k lit frame k + 1
        self._frames = 0
        self._reset_track()

    # --- what the page is told ---------------------------------------------------------------------
    @property
    def passed(self) -> bool:
        return self.state.status == PASSED

    def prompt(self) -> dict:
        """The challenge part of the answer to the frame just observed (call once per answer)."""
        state = self.state
        reply = {"step": state.current_step, "index": state.step_index, "total": len(state.steps)}
        if self.flash is not None and state.status == PENDING:
            reply["flash"] = list(self.flash.colour_for(self._answers))
        self._answers += 1
        return reply

    def first_prompt(self) -> dict:
        """The challenge announced when the attempt starts, before any frame (not an answer to one)."""
        reply = {"step": LOOK, "index": 0, "total": len(self.state.steps)}
        if self.flash is not None:
            reply["flash"] = list(NEUTRAL)
        return reply

    # --- frames ------------------------------------------------------------------------------------
    def _reset_track(self) -> None:
        self._last_center: tuple[float, float] | None = None
        self._last_width: float | None = None
        self._last_embedding: np.ndarray | None = None
        self._last_seen: float | None = None
        self._candidates: list[np.ndarray] = []
        self._baseline: np.ndarray | None = None
        self._turn: float | None = None  # fitted yaw of the last face frame, from the baseline
        self._turn_seen: float | None = None
        self._recent: list[float] = []  # the last few fitted yaws
        self._reveal_at: float | None = None
        self._frames_since_reveal = 0
        self._turn_at_reveal = 0.0
        self._onset_at: float | None = None
        self._inside = 0  # frames inside the current turn, after its onset
        self._prompt_due: float | None = None

    def observe(self, analysis: FrameAnalysis, now: float | None = None) -> bool:
        state, config = self.state, self.config
        now = self._clock() if now is None else now
        frame = self._frames
        self._frames += 1
        if state.status != PENDING:
            return True
        if state.started_at is not None and now - state.started_at > config.seconds:
            return self._fail("timeout")
        if self.flash is not None and analysis.face is not None and analysis.mesh is not None:
            self.flash.record(frame, analysis.skin_rgb, mesh_yaw(analysis.mesh))

        face = analysis.face
        if face is None or analysis.mesh is None:
            if self._last_seen is not None and now - self._last_seen > config.max_gap_s:
                return self._break("face_lost")
            return self._tick(now)
        if state.started_at is None:
            state.started_at = now
        if not self._continues(analysis, now):
            return self._break("track_broken")
        if self._baseline is None:
            self._collect_baseline(analysis, now)
            return True
        turn = motion(self._baseline, analysis.mesh)
        state.trace.append((round(now - (state.baseline_at or now), 2), round(turn.yaw, 1)))
        previous, self._turn = self._turn, turn.yaw
        self._recent = [*self._recent[-2:], turn.yaw]
        elapsed = max(now - (self._turn_seen or now), 0.1)
        self._turn_seen = now
        if state.phase != FLASHING and previous is not None and abs(turn.yaw - previous) > config.max_turn_speed * elapsed:
            return self._fail("jump", yaw=round(turn.yaw, 1), previous=round(previous, 1))
        self._advance(analysis, turn, now)
        return True

    def _tick(self, now: float) -> bool:
        """A frame without a usable face: time still passes for the prompts."""
        if self.state.phase == WAITING and self._prompt_due is not None and now >= self._prompt_due:
            self._reveal(now)
        elif self.state.phase == PROMPTED:
            self._frames_since_reveal += 1
            if now - self._reveal_at > self.config.respond_s:
                self._fail("too_slow")
        return True

    def _collect_baseline(self, analysis: FrameAnalysis, now: float) -> None:
        config = self.config
        yaw = analysis.quality.pose.yaw if analysis.quality is not None else estimate_pose(analysis.face).yaw
        mesh = analysis.mesh
        frontal = abs(yaw) <= config.frontal_degrees and abs(mesh_yaw(mesh)) <= config.frontal_degrees
        still = not self._candidates or abs(motion(self._candidates[0], mesh).yaw) <= config.still_degrees
        if not frontal:
            self._candidates = []
            return
        self._candidates = [*self._candidates, mesh] if still else [mesh]
        if len(self._candidates) >= config.baseline_frames:
            self._baseline = np.mean(np.stack(self._candidates), axis=0)
            self._turn, self._turn_seen = 0.0, now
            self.state.baseline_at = now
            self.state.phase = WAITING
            self._schedule(now)

    def _schedule(self, now: float) -> None:
        low, high = self.config.prompt_delay_s
        self._prompt_due = now + self._rng.uniform(low, high)

    def _reveal(self, now: float) -> None:
        self.state.phase = PROMPTED
        self._reveal_at = now
        self._frames_since_reveal = 0
        self._turn_at_reveal = float(np.median(self._recent)) if self._recent else 0.0
        self._onset_at = None
        self._inside = 0

    def _advance(self, analysis: FrameAnalysis, turn, now: float) -> None:
        state, config = self.state, self.config
        if state.phase == WAITING:
            # A turn nobody asked for yet: towards the coming prompt it is anticipation (a recording, or
            # someone who knows the order); a whole turn either way is a movement that was not asked for.
            upcoming = SIGN[state.steps[state.step_index]]
            if state.step_index == 0 and abs(turn.yaw) >= config.turn_degrees:
                self._fail("wrong_movement", yaw=round(turn.yaw, 1))
            elif state.step_index > 0 and upcoming * turn.yaw >= config.onset_degrees:
                self._fail("anticipated", yaw=round(turn.yaw, 1))
            elif now >= self._prompt_due:
                self._reveal(now)
            return
        if state.phase == PROMPTED:
            self._answer(analysis, turn, now)
            return
        if state.phase == FLASHING:
            self._judge_flash(now)

    def _answer(self, analysis: FrameAnalysis, turn, now: float) -> None:
        state, config = self.state, self.config
        step = state.steps[state.step_index]
        sign = SIGN[step]
        self._frames_since_reveal += 1
        if now - self._reveal_at > config.respond_s:
            self._fail("too_slow")
            return
        if state.step_index == 0 and -sign * turn.yaw >= config.turn_degrees:
            self._fail("wrong_movement", yaw=round(turn.yaw, 1))
            return
        moved = sign * (turn.yaw - self._turn_at_reveal)
        if self._onset_at is None:
            if moved < config.onset_degrees:
                if moved >= config.start_degrees:
                    self._inside += 1  # a turn's slow start, below the onset
                return
            # The first frame after a prompt was captured before the person could have seen it.
            if self._frames_since_reveal < 2 or now - self._reveal_at < config.min_reaction_s:
                self._fail("anticipated", reaction_s=round(now - self._reveal_at, 2))
                return
            self._onset_at = now
        if sign * turn.yaw < config.turn_degrees:
            self._inside += 1
            return
        if self._inside < config.min_transition_frames:
            self._fail("jump", frames_inside=self._inside)
            return
        if turn.rigid_residual > config.max_rigid_residual or turn.parallax_ratio < config.min_parallax_ratio:
            self._fail("flat", rigid=round(turn.rigid_residual, 4), parallax=round(turn.parallax_ratio, 2))
            return
        state.history.append(
            {
                "step": step,
                "yaw": round(turn.yaw, 1),
                "reaction_s": round(self._onset_at - self._reveal_at, 2),
                "seconds": round(now - self._reveal_at, 2),
                "frames_inside": self._inside,
                "rigid": round(turn.rigid_residual, 4),
                "parallax": round(turn.parallax_ratio, 2),
            }
        )
        state.step_index += 1
        if state.step_index < len(state.steps):
            state.phase = WAITING
            self._schedule(now)
        else:
            state.phase = FLASHING
            self._judge_flash(now)

    def _judge_flash(self, now: float) -> None:
        state = self.state
        if self.flash is None:
            state.status, state.phase, state.passed_at = PASSED, DONE, now
            return
        verdict = self.flash.verdict()
        state.flash = verdict.report()
        if verdict.status == "passed":
            state.status, state.phase, state.passed_at = PASSED, DONE, now
        elif verdict.status == "failed" and verdict.frames >= self.config.flash_max_frames:
            self._fail("no_reflection")

    def _continues(self, analysis: FrameAnalysis, now: float) -> bool:
        """Is this face the same one as in the previous face frame? Updates the track either way; the
        reason of a break goes into the history."""
        face, config = analysis.face, self.config
        why: dict = {}
        if analysis.detection.count > 1:  # a second face in view: someone could be swapping pictures
            why = {"faces": analysis.detection.count}
        elif self._last_center is not None:
            jump = math.dist(face.center, self._last_center) / max(self._last_width or face.width, 1.0)
            gap = now - (self._last_seen or now)
            if jump > config.max_jump or gap > config.max_gap_s:
                why = {"jump": round(jump, 2), "gap_s": round(gap, 2)}
        if not why and analysis.embedding is not None and self._last_embedding is not None:
            similarity = float(np.dot(analysis.embedding, self._last_embedding))
            if similarity < config.track_similarity:
                why = {"similarity": round(similarity, 3)}
        self._last_center, self._last_width, self._last_seen = face.center, face.width, now
        if analysis.embedding is not None:
            self._last_embedding = analysis.embedding
        if why:
            self.state.history.append({"track": "broken", **why})
        return not why

    def _break(self, reason: str) -> bool:
        """The face track broke: before the first prompt it starts again; after it, the challenge fails."""
        state = self.state
        state.track_breaks += 1
        if state.phase not in (BASELINE, WAITING) or state.step_index > 0 or self._reveal_at is not None:
            self._fail(reason)
            return False
        state.reason = reason
        state.phase = BASELINE
        state.baseline_at = None
        self._reset_track()
        return False

    def _fail(self, reason: str, **detail: object) -> bool:
        state = self.state
        state.status, state.reason, state.phase = FAILED, reason, DONE
        if detail:
            state.history.append({"failed": reason, **detail})
        return True


__all__ = [
    "FAILED",
    "HOLD",
    "LOOK",
    "PASSED",
    "PENDING",
    "STEPS",
    "TURNS",
    "TURN_LEFT",
    "TURN_RIGHT",
    "LivenessCheck",
    "LivenessConfig",
    "LivenessState",
    "random_challenge",
]
