"""One face sign-in attempt (one websocket connection): the business rules behind the consumer.

The consumer only moves bytes and JSON; this decides what a frame means. Per attempt it keeps the
frames seen, the votes, the deadline and the frame budget; recognition itself comes from the
pipeline's decision code through ``facelogin.services.recognition``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from facelogin import protocol
from facelogin.models import Student
from facelogin.pipeline.batching import FrameQueueFull
from facelogin.pipeline.decide import POOR_QUALITY, frame_gate
from facelogin.pipeline.errors import ImageError, PipelineError
from facelogin.pipeline.liveness import FAILED as LIVENESS_FAILED
from facelogin.pipeline.liveness import LivenessCheck, random_challenge
from facelogin.pipeline.pad import pad_verdict
from facelogin.services import audit, drift, operations, recognition, throttle
from facelogin.services.tickets import ticket_issue

logger = logging.getLogger(__name__)

QUALITY_GUIDANCE = {
    "too_small": protocol.Guidance.MOVE_CLOSER,
    "too_dark": protocol.Guidance.TOO_DARK,
    "too_bright": protocol.Guidance.TOO_BRIGHT,
    "blurred": protocol.Guidance.HOLD_STILL,
    "turned": protocol.Guidance.LOOK_AT_CAMERA,
}


@dataclass
class Outcome:
    """What the consumer sends back, and whether the connection ends."""

    reply: dict
    close_code: int | None = None


@dataclass
class FaceAttempt:
    ip: str | None
    session_key: str
    user_agent: str = ""
    claim: str | None = None  # verify mode: the student number typed before the camera started
    claim_label: str | None = None  # its classifier label ("" when no such student)
    started: float = field(default_factory=time.monotonic)
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    frames: int = 0
    bad_images: int = 0
    seen_digests: set[str] = field(default_factory=set)
    finished: bool = False
    decider: object | None = None
    liveness: LivenessCheck | None = None
    confirmed_label: str | None = None  # identity decided; waiting for the liveness challenge
    last_scores: dict = field(default_factory=dict)
    pad_scores: list[float] = field(default_factory=list)  # this face track's presentation-attack scores
    first_vote_at: float | None = None  # when a frame first voted for a student (the challenge's clock)
    usable_frames: int = 0  # frames with a face good enough to vote: the page's progress, whoever it is
    server_seconds: float = 0.0  # time its frames spent with the server (queued, analysed)
    waiting_since: float | None = None
    # Frames by what became of them (vote reason, or the quality reason of a frame refused for quality):
    # the admin's dashboard reads why attempts failed from these.
    frame_reasons: dict[str, int] = field(default_factory=dict)
    model: object | None = None  # the classifier version that decided the identity

    @property
    def config(self) -> dict:
        return settings.FACELOGIN

    @property
    def deadline(self) -> float:
        return self.started + self.config["ATTEMPT_SECONDS"]

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    # --- start --------------------------------------------------------------------------------
    async def begin(self) -> Outcome | None:
        """None when the attempt may go on (send ``hello()``), else the refusal to send."""
        verdict = await database_sync_to_async(self._start_now)()
        if not verdict.allowed:
            return await self._throttled(verdict)
        if self.verifying and not self.claim:
            return await self.fail("no_claim", protocol.Close.NO_CLAIM)
        engine = await recognition.engine_async()
        model = await engine.current_model_async() if engine is not None else None
        if model is None:
            self.finished = True
            await self._audit("unavailable", reason="no_model" if engine is None else "no_classifier")
            return Outcome({"type": "failed", "reason": "unavailable"}, protocol.Close.UNAVAILABLE)
        self.decider = recognition.new_decider(model, claim=self.claim_label)
        if self.config["LIVENESS"]:
            self.liveness = LivenessCheck(random_challenge(), recognition.liveness_config())
        return None

    def _start_now(self) -> throttle.Verdict:
        if self.verifying and self.claim:
            self.claim_label = _claimed_label(self.claim)
        return throttle.attempt_start(ip=self.ip, session_key=self.session_key, student=self.claim_label or None)

    @property
    def verifying(self) -> bool:
        return self.config["MODE"] == "verify"

    def hello(self) -> dict:
        config = self.config
        return {
            "type": "hello",
            "nonce": self.nonce,
            "mode": config["MODE"],
            "max_frame_bytes": config["MAX_FRAME_BYTES"],
            "frame_interval_ms": int(1000 / config["MAX_FRAMES_PER_SECOND"]) + 20,
            "min_frames": config["MIN_FRAMES"],
            "max_frames": config["MAX_FRAMES"],
            "deadline_seconds": config["ATTEMPT_SECONDS"],
            "codes": protocol.codes_for_client(),
            "challenge": self.liveness.first_prompt() if self.liveness is not None else None,
        }

    # --- frames -------------------------------------------------------------------------------
    async def frame(self, data: bytes) -> Outcome:
        received_at = time.monotonic()  # the liveness prompts' clock: when the frame reached the server
        if self.seconds_left() <= 0:
            return await self.fail("timeout", protocol.Close.TIMEOUT)
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.seen_digests:  # a replayed frame counts once
            return Outcome({"type": "error", "code": protocol.Error.DUPLICATE})
        self.seen_digests.add(digest)
        self.frames += 1

        engine = await recognition.engine_async()
        self.waiting_since = time.monotonic()
        try:
            recognised = await engine.batcher.analyze(data, key=self.ip or "")
        except FrameQueueFull:  # the server is overloaded: not the student's failure
            return await self.unserved()
        except ImageError:
            self.bad_images += 1
            self._count_frame("bad_image")
            if self.bad_images >= 3:
                return await self.fail("bad_images", protocol.Close.BAD_IMAGES, reply_reason="bad_image")
            return Outcome({"type": "error", "code": protocol.Error.BAD_IMAGE})
        except PipelineError:
            return await self.fail("unavailable", protocol.Close.UNAVAILABLE)
        finally:
            self.server_seconds, self.waiting_since = self.server_time(), None

        analysis = recognised.analysis
        self.usable_frames += frame_gate(analysis) is None  # good enough to vote (liveness embeds poorer faces too)
        model = await engine.current_model_async()
        if model is None:
            return await self.fail("unavailable", protocol.Close.UNAVAILABLE)
        if self.claim_label is None and recognised.model is model:
            vote = recognised.vote  # voted in the batch, off the event loop
        else:  # verifying (1:1, ~0.1 ms), or the model changed since the batch ran
            vote = recognition.frame_vote(model, analysis, claim=self.claim_label)
        if vote.label is not None or not self.last_scores:
            self.last_scores = recognition.vote_scores(vote)
        if vote.label is not None and self.first_vote_at is None:
            self.first_vote_at = received_at
        quality_reasons = analysis.quality.reasons if vote.reason == POOR_QUALITY and analysis.quality else ()
        self._count_frame(quality_reasons[0] if quality_reasons else vote.reason)

        if self.liveness is not None:
            if not self.liveness.observe(analysis, received_at):
                # A new face track: identity evidence from the old one must not carry over.
                self.decider, self.confirmed_label = recognition.new_decider(model, claim=self.claim_label), None
                self.pad_scores = []
            if self.liveness.state.status == LIVENESS_FAILED:
                return await self.fail("liveness_failed", protocol.Close.NOT_RECOGNISED)
            if analysis.pad_score is not None:
                self.pad_scores.append(analysis.pad_score)

        if self.confirmed_label is None:
            decision = self.decider.observe(vote, analysis)
            if decision.status == "rejected":
                return await self.fail(decision.reason or "not_recognised", protocol.Close.NOT_RECOGNISED)
            if decision.status == "accepted":
                self.confirmed_label = decision.label
                if self.decider.fused_vote is not None:  # the fused track decided: its scores are the sign-in's
                    self.last_scores = recognition.vote_scores(self.decider.fused_vote)
                self.model = model
        elif recognition.conflicts_with(vote, self.confirmed_label):
            return await self.fail("conflict", protocol.Close.NOT_RECOGNISED)
        elif self.liveness is not None and not recognition.same_student(model, analysis, self.confirmed_label):
            # Every frame of the track, turned or not, must still be this student: someone else's head
            # cannot do the movements for a photo's identity.
            return await self.fail("liveness_failed", protocol.Close.NOT_RECOGNISED, audit_reason="identity_changed")

        if self.confirmed_label is not None and (self.liveness is None or self.liveness.passed):
            if self.liveness is not None and pad_verdict(self.pad_scores, self.config["PAD_THRESHOLD"]).attack:
                return await self.fail("liveness_failed", protocol.Close.NOT_RECOGNISED, audit_reason="presentation_attack")
            return await self._accept(self.confirmed_label)
        if self.frames >= self.config["MAX_FRAMES"]:
            reason = "liveness_failed" if self.confirmed_label is not None else "not_recognised"
            return await self.fail(reason, protocol.Close.NOT_RECOGNISED)
        return Outcome(self._frame_reply(analysis))

    def server_time(self) -> float:
        waiting = time.monotonic() - self.waiting_since if self.waiting_since is not None else 0.0
        return self.server_seconds + waiting

    def _progress(self) -> float:
        # From frames with a usable face, never from votes: progress must not tell whether the face
        # matches anyone before the decision.
        identity = recognition.usable_frames_progress(self.usable_frames)
        if self.liveness is None:
            return identity
        state = self.liveness.state
        challenge = 1.0 if self.liveness.passed else state.step_index / len(state.steps)
        return (identity + challenge) / 2

    def _frame_reply(self, analysis) -> dict:
        face = analysis.face
        guidance = protocol.Guidance.NO_FACE
        if face is not None:
            reasons = analysis.quality.reasons if analysis.quality else ()
            guidance = QUALITY_GUIDANCE.get(reasons[0], protocol.Guidance.HOLD_STILL) if reasons else protocol.Guidance.FACE_FOUND
            if analysis.detection.count > 1:
                guidance = protocol.Guidance.SEVERAL_FACES
        width, height = analysis.detection.image_size
        return {
            "type": "frame",
            "seq": self.frames,
            "width": width,
            "height": height,
            "faces": analysis.detection.count,
            "face": {"box": [round(v, 1) for v in face.box]} if face is not None else None,
            "guidance": guidance,
            "progress": round(self._progress(), 3),
            "challenge": self.liveness.prompt() if self.liveness is not None else None,
        }

    # --- endings ------------------------------------------------------------------------------
    # Each ending is one trip to a database thread (student, throttle, ticket and audit row together):
    # under load every extra trip cost a thread switch and, on SQLite, a new connection.
    async def _accept(self, label: str) -> Outcome:
        return await database_sync_to_async(self._accept_now)(label)

    def _accept_now(self, label: str) -> Outcome:
        student = _active_student(label)
        if student is None:  # suspended, graduated, blocked or deleted since the last retrain
            return self._fail_now("not_recognised", protocol.Close.NOT_RECOGNISED, audit_reason="inactive_student")
        verdict = throttle.student_recognised(student_id=student.pk)
        if not verdict.allowed:
            return self._throttled_now(verdict, student=student)
        # Whether the liveness challenge was passed travels with the ticket: campus apps see it in acr.
        passed = self.liveness is not None and self.liveness.passed
        ticket = ticket_issue(student=student, session_key=self.session_key, scores={**self.last_scores, "liveness": passed})
        self.finished = True
        self._record("ticket_issued", student=student)
        if self.liveness is not None and self.liveness.passed and self.model is not None:
            # Appearance drift: the track that decided may become one more template of the student.
            try:
                drift.drift_template_offer(
                    student=student,
                    ticket_id=ticket.ticket_id,
                    embedding=self.decider.track.embedding(),
                    frames=self.decider.track.frames,
                    model=self.model,
                    liveness_passed=True,
                )
            except Exception:  # noqa: BLE001 - learning is a bonus; it must never cost the sign-in
                logger.exception("face template from sign-in not kept")
        return Outcome(
            {"type": "success", "ticket": ticket.token, "expires_in": ticket.expires_in}, protocol.Close.NORMAL
        )

    async def _throttled(self, verdict: throttle.Verdict) -> Outcome:
        return await database_sync_to_async(self._throttled_now)(verdict)

    def _throttled_now(self, verdict: throttle.Verdict, *, student: Student | None = None) -> Outcome:
        self.finished = True
        self._record("throttled", student=student, reason=verdict.scope)
        return Outcome({"type": "throttled", "retry_after": verdict.retry_after}, protocol.Close.THROTTLED)

    async def fail(self, reason: str, close_code: int, *, reply_reason: str | None = None, audit_reason: str = "") -> Outcome:
        if reason == "timeout" and not throttle.ending_counts(server_seconds=self.server_time(), attempt_seconds=self.config["ATTEMPT_SECONDS"]):
            return await self.unserved()  # the server held its frames most of the time
        return await database_sync_to_async(self._fail_now)(reason, close_code, reply_reason=reply_reason, audit_reason=audit_reason)

    async def unserved(self) -> Outcome:
        """The server was too busy to judge this attempt: said so, audited, counted against nobody."""
        self.finished = True
        await self._audit("unavailable", reason="busy")
        return Outcome({"type": "failed", "reason": "busy"}, protocol.Close.BUSY)

    def _fail_now(self, reason: str, close_code: int, *, reply_reason: str | None = None, audit_reason: str = "") -> Outcome:
        self._count_failure(audit_reason or reason)
        return Outcome({"type": "failed", "reason": reply_reason or reason}, close_code)

    async def violation(self, code: str, close_code: int) -> Outcome:
        """The client broke the protocol (text frame, oversized frame, flooding): a failed attempt."""
        await database_sync_to_async(self._count_failure)(code)
        return Outcome({"type": "error", "code": code}, close_code)

    def _count_failure(self, reason: str) -> None:
        self.finished = True
        throttle.attempt_failed(ip=self.ip, session_key=self.session_key, recognised=self.confirmed_label)
        self._record("failed", reason=reason)

    def _count_frame(self, reason: str) -> None:
        self.frame_reasons[reason] = self.frame_reasons.get(reason, 0) + 1

    async def abandon(self) -> None:
        """The browser went away before a decision: with frames sent, a failed attempt."""
        if not self.finished and self.frames:
            self.finished = True
            await database_sync_to_async(self._abandon_now)()

    def _abandon_now(self) -> None:
        throttle.attempt_abandoned(ip=self.ip, session_key=self.session_key, frames=self.frames, recognised=self.confirmed_label)
        self._record("abandoned")

    async def _audit(self, outcome: str, *, reason: str = "") -> None:
        await database_sync_to_async(self._record)(outcome, reason=reason)

    def _record(self, outcome: str, *, student: Student | None = None, reason: str = "") -> None:
        seconds = time.monotonic() - self.started
        operations.attempt_ended(outcome=outcome, reason=reason, seconds=seconds)
        audit.face_attempt_record(
            outcome=outcome,
            reason=reason,
            ip=self.ip,
            user_agent=self.user_agent,
            student=student,
            frames=self.frames,
            scores={**self.last_scores, "claimed": self.claim} if self.claim else self.last_scores,
            challenge=self._challenge_report(),
            seconds=seconds,
            frame_reasons=self.frame_reasons,
        )


    def _challenge_report(self) -> dict:
        if self.liveness is None:
            return {"liveness": "off"}
        report = self.liveness.state.report()
        passed_at = self.liveness.state.passed_at
        if passed_at is not None and self.first_vote_at is not None:
            # From the first frame recognised as a student to the challenge passed (bench.attacks' figure).
            report["recognised_to_passed_s"] = round(max(0.0, passed_at - self.first_vote_at), 2)
        return report


def _claimed_label(student_number: str) -> str:
    pk = Student.objects.filter(student_number=student_number).values_list("pk", flat=True).first()
    return str(pk) if pk is not None else ""  # an unknown number matches nobody, like a stranger


def _active_student(label: str) -> Student | None:
    student = Student.objects.select_related("user").filter(pk=int(label)).first()
    if student is None or not student.may_sign_in or student.face_login_blocked:
        return None
    return student
