"""The sign-in decision: per-frame votes, per-attempt state, the thesis's baseline rule, the trained model.

Per frame (``vote_frame``): the classifier's top-1 student and probability are only a proposal. The
frame VOTES for that student when
  1. the embedding's similarity to THAT student's own enrolled photos reaches the calibrated threshold
     (the open-set gate: a stranger must look like the student, not merely least unlike them);
  2. the nearest student in the gallery is the same student (classifier and gallery agree);
  3. the best student beats the second best by ``margin`` (cosine), when configured;
  4. the classifier's probability reaches ``min_probability``, when configured (off by default:
     closed-set probabilities shrink as ~1/N and say nothing about strangers).
A frame without a face, or of poor quality, simply gives no vote.

Across frames (``AttemptDecider``): accepted once ``min_frames`` frames voted for one student and no
frame pointed confidently at a different student; any such conflict rejects the attempt at once (two
people in turn in front of the camera, or a look-alike, is not a sign-in). Rejected at ``max_frames``,
at the deadline, or as soon as the frames left cannot reach ``min_frames``.

``ThesisRule`` reproduces the thesis exactly (softmax MLP, top probability > 72.349 % in at least 5
frames, no open-set gate) for the baseline row of the benchmark.

``TrainedModel`` bundles what one classifier version needs at login, with a versioned byte form.
Everything here is plain values and numpy; no Django, nothing loaded at import time.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import errors
from .calibrate import DEFAULT_FLOOR, Calibration, calibrate
from .classify import (
    Classifier,
    Gallery,
    IncrementalClassifier,
    make_classifier,
    normalise,
)
from .types import Face, FrameAnalysis

__all__ = [
    "ACCEPTED",
    "PENDING",
    "REJECTED",
    "THESIS_MIN_FRAMES",
    "THESIS_PROBABILITY",
    "AttemptDecider",
    "Decision",
    "DecisionConfig",
    "FrameVote",
    "ThesisRule",
    "TrainedModel",
    "decide_attempt",
    "frame_gate",
    "holdout_metrics",
    "similarity_to",
    "train_model",
    "vote_analyses",
    "vote_analysis",
    "vote_frame",
    "vote_frames",
    "with_config",
]

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"

# Reason codes (machine-readable; callers translate).
NOT_RECOGNISED = "not_recognised"  # the attempt ended and no frame voted for anyone
CONFLICT = "conflict"  # frames pointed confidently at two different students
MAX_FRAMES = "max_frames"  # frames ran out with some votes, too few for one student
DEADLINE = "deadline"  # the attempt's time ran out

# Frame-level reasons for not voting.
VOTE = "vote"
NO_FACE = "no_face"
POOR_QUALITY = "quality"
SEVERAL_FACES = "several_faces"
BELOW_THRESHOLD = "below_threshold"
NOT_ENROLLED = "not_enrolled"  # verification: the claimed student has no enrolled face
DISAGREE = "disagree"
LOW_MARGIN = "low_margin"
LOW_PROBABILITY = "low_probability"

FUSIONS = ("votes", "track")

# The thesis: a softmax MLP over 301 people, sign-in when the top probability exceeds 72.349 % in at
# least 5 frames.
THESIS_PROBABILITY = 0.72349
THESIS_MIN_FRAMES = 5


@dataclass(frozen=True)
class DecisionConfig:
    """How frames become a decision. The threshold itself comes from the model's ``Calibration``.

    Defaults measured with ``python -m bench.accuracy ... --sweep`` (ORL + Yale + johns, 5 seeds, 5,000
    impostor attempts). At the target FPIR 1e-3 every setting from 1 to 4 frames was clean; with the
    threshold deliberately loosened (``--target-fpir 0.01``) 1 frame let 66/5,000 impostor attempts in,
    2 frames 19, 3 frames none, at a genuine rate of 1.0; 4 frames cost genuine logins (0.983, and 0.923
    with 2 enrolment photos). Hence 3: one frame of safety beyond the last leaky setting.
    """

    min_frames: int = 3
    max_frames: int = 10
    deadline_s: float | None = 20.0
    # best - second-best student cosine a vote needs. 0.05 and 0.1 removed no impostor at min_frames 2-3
    # in the sweep and 0.1 cost genuine logins (1.0 -> 0.995); off. The threshold does the work.
    margin: float = 0.0
    # Off: closed-set probabilities shrink as ~1/N with N students and say nothing about strangers.
    min_probability: float = 0.0
    require_agreement: bool = True
    # What counts as conflicting: "votes" (another frame VOTED for someone else) or "confident" (another
    # frame's best student, or its classifier's student, reached the threshold, vote or not). The two
    # measured the same; "confident" is the stricter, so it is the default.
    conflict: str = "confident"
    # How an attempt's frames add up (see ``AttemptDecider``): "votes", ``min_frames`` frames each voting
    # for one student at the threshold; "track", the face track's frames fused into one embedding (their
    # mean) that must vote for the student ``min_frames`` of its frames name as nearest.
    # Measured (bench.accuracy, 5 seeds): with 5 frames an attempt "track" signed in 0.944 of the live
    # sessions against 0.937 for "votes"; with 12 frames both 0.958; no stranger either way. It decides
    # sooner, for the cost of one comparison a frame (0.02 ms).
    fusion: str = "track"
    # "track": frames of the track that must also vote for the student on their own. The many-photos
    # stress test, where an attempt's frames are different photos, showed why: the mean of a stranger's
    # different photos looks more like "someone" than any of them (8 of 25,000 impostor attempts got in
    # with 0 at 130 px webcam frames, 3 at 200 px; seed 3: 0.16 %). With 1: none, and the live gain stays
    # (0.944 at 5 frames). A continuous track of one face is one photo's worth of evidence; this keeps a
    # fused decision from being more than that.
    fusion_votes: int = 1

    def __post_init__(self) -> None:
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise ValueError("need 1 <= min_frames <= max_frames")
        if self.conflict not in ("votes", "confident"):
            raise ValueError("conflict must be 'votes' or 'confident'")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}")


@dataclass(frozen=True)
class FrameVote:
    """One frame's evidence. ``label`` is the student voted for, or None (``reason`` says why)."""

    label: str | None
    reason: str
    classifier_label: str | None = None
    probability: float = 0.0
    gallery_label: str | None = None
    similarity: float = -math.inf  # to the classifier's student's enrolled photos
    best_similarity: float = -math.inf  # to the nearest student (gallery_label)
    second_similarity: float = -math.inf
    threshold: float = math.inf
    confident: tuple[str, ...] = ()  # students this frame points at with similarity >= threshold

    @property
    def margin(self) -> float:
        return self.best_similarity - self.second_similarity

    @classmethod
    def no_vote(cls, reason: str) -> FrameVote:
        return cls(label=None, reason=reason)


@dataclass(frozen=True)
class Decision:
    status: str  # pending | accepted | rejected
    label: str | None = None  # the student signed in (accepted only)
    reason: str | None = None  # rejected only: not_recognised | conflict | max_frames | deadline
    frames: int = 0
    votes: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0  # frames that pointed at a student other than the leading one

    @property
    def final(self) -> bool:
        return self.status != PENDING

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED


# --- per frame -----------------------------------------------------------------------------------


def vote_frames(model: TrainedModel, embeddings: np.ndarray) -> list[FrameVote]:
    """Votes for a batch of embeddings (rows); the bench uses this, the login one frame at a time."""
    X = normalise(embeddings)
    if not len(X):
        return []
    config, threshold = model.config, model.threshold
    cls_labels, probs = model.classifier.predict(X)
    if config.min_probability > 0 and getattr(model.classifier, "approximate_probability", False):
        # The gate compares the probability itself: take the exact softmax (one float32 pass over
        # every centroid), not the int8 estimate a large gallery's classifier reports.
        proba = model.classifier.predict_proba(X)
        column = {label: j for j, label in enumerate(model.classifier.classes)}
        probs = proba[np.arange(len(X)), [column[label] for label in cls_labels]]
    # What can change a decision: the best student, and a runner-up at or above threshold - margin and
    # within margin of the best (the margin rule). The search is exact for those, so a genuine probe's
    # distant runner-up does not cost a pass over a large gallery (a stranger still can: near every
    # student's bound; such probes of a batch share one matrix product).
    gal_labels, gal_scores = model.gallery.search(X, k=2, floor=threshold - config.margin, within=config.margin)
    own = model.gallery.score(X, cls_labels)
    votes = []
    for i in range(len(X)):
        c_label, prob = cls_labels[i], float(probs[i])
        g_label = gal_labels[i][0] if gal_labels[i] else None
        best, second = float(gal_scores[i, 0]), float(gal_scores[i, 1])
        sim = float(own[i])
        confident = tuple(
            dict.fromkeys(lbl for lbl, s in ((c_label, sim), (g_label, best)) if lbl is not None and s >= threshold)
        )
        if sim < threshold:
            reason = BELOW_THRESHOLD
        elif config.require_agreement and c_label != g_label:
            reason = DISAGREE
        elif best - second < config.margin:
            reason = LOW_MARGIN
        elif prob < config.min_probability:
            reason = LOW_PROBABILITY
        else:
            reason = VOTE
        votes.append(
            FrameVote(
                label=c_label if reason == VOTE else None,
                reason=reason,
                classifier_label=c_label,
                probability=prob,
                gallery_label=g_label,
                similarity=sim,
                best_similarity=best,
                second_similarity=second,
                threshold=threshold,
                confident=confident,
            )
        )
    return votes


def similarity_to(model: TrainedModel, embedding: np.ndarray, label: str) -> float:
    """The embedding's similarity to one student's enrolled photos (-inf when the student has none)."""
    if label not in model.gallery:
        return float("-inf")
    return float(model.gallery.score(normalise(np.asarray(embedding)[None, :]), [label])[0])


def vote_frame(model: TrainedModel, embedding: np.ndarray | None) -> FrameVote:
    if embedding is None:
        return FrameVote.no_vote(NO_FACE)
    return vote_frames(model, np.asarray(embedding)[None, :])[0]


def frame_gate(analysis: FrameAnalysis) -> str | None:
    """Why an analysed frame may not vote at all (None: it may)."""
    if analysis.face is None:
        return NO_FACE
    if analysis.detection.count > 1:
        # Which face is the person signing in? A student's photo held up beside a stranger's face is
        # the attack this stops; the client is asked for one face.
        return SEVERAL_FACES
    if analysis.quality is not None and not analysis.quality.ok:
        return POOR_QUALITY
    if analysis.embedding is None:  # the analyzer did not embed it (it skips poor-quality faces)
        return NO_FACE
    return None


def vote_analyses(model: TrainedModel, analyses: Sequence[FrameAnalysis]) -> list[FrameVote]:
    """``vote_analysis`` for many frames, with one batched classifier/gallery call (the benchmark)."""
    gates = [frame_gate(a) for a in analyses]
    ok = [i for i, g in enumerate(gates) if g is None]
    batch = vote_frames(model, np.stack([analyses[i].embedding for i in ok])) if ok else []
    votes: list[FrameVote] = [FrameVote.no_vote(g) if g is not None else None for g in gates]  # type: ignore[misc]
    for i, v in zip(ok, batch):
        votes[i] = v
    return votes


@dataclass(frozen=True)
class RecognisedFrame:
    """A frame analysed and voted in one batch: ``vote`` is against every student of ``model`` (the
    model that was active when the batch ran), None when no model was loaded yet."""

    analysis: FrameAnalysis
    model: TrainedModel | None
    vote: FrameVote | None


def recognise_batch(model: TrainedModel | None, results: Sequence[FrameAnalysis | Exception]) -> list[RecognisedFrame | Exception]:
    """``analyze_batch``'s results with their votes, from one classifier and gallery call for the whole
    batch; a frame's error stays in its place. The server runs this off the event loop, so the gallery
    search (milliseconds at 30,000 students) is batched across connections instead of run per frame."""
    analysed = [i for i, result in enumerate(results) if isinstance(result, FrameAnalysis)]
    votes = vote_analyses(model, [results[i] for i in analysed]) if model is not None else [None] * len(analysed)
    recognised: list[RecognisedFrame | Exception] = list(results)
    for i, vote in zip(analysed, votes, strict=True):
        recognised[i] = RecognisedFrame(results[i], model, vote)
    return recognised


def vote_claim(model: TrainedModel, analysis: FrameAnalysis, label: str, threshold: float) -> FrameVote:
    """1:1 verification: the frame is compared with the claimed student's enrolled photos only.

    ``threshold`` is the verification threshold (``model.calibration.verification()``), not the
    identification one: no other student is searched, so none can be matched by mistake.
    """
    gate = frame_gate(analysis)
    if gate is not None:
        return FrameVote.no_vote(gate)
    if label not in model.gallery:
        return FrameVote.no_vote(NOT_ENROLLED)
    similarity = float(model.gallery.score(normalise(np.asarray(analysis.embedding)[None, :]), [label])[0])
    matched = similarity >= threshold
    return FrameVote(
        label=label if matched else None,
        reason=VOTE if matched else BELOW_THRESHOLD,
        classifier_label=label,
        gallery_label=label,
        similarity=similarity,
        best_similarity=similarity,
        threshold=threshold,
        confident=(label,) if matched else (),
    )


def vote_analysis(model: TrainedModel, analysis: FrameAnalysis) -> FrameVote:
    """The vote of one analysed frame: no face, several faces or poor quality give no vote."""
    return vote_analyses(model, [analysis])[0]


# --- per attempt ---------------------------------------------------------------------------------


def same_track(previous: Face, face: Face, *, max_shift: float = 0.5, max_scale: float = 1.4) -> bool:
    """Can ``face`` be the face of ``previous`` one frame later? Its centre moved less than ``max_shift``
    of the face's size and its size changed by less than ``max_scale`` times. At the page's ~10 frames/s a
    head moves a few percent of its size a frame; a jump is another face, or a picture swapped in."""
    size = max(previous.width, previous.height, 1.0)
    dx, dy = face.center[0] - previous.center[0], face.center[1] - previous.center[1]
    ratio = max(face.height, 1.0) / max(previous.height, 1.0)
    return math.hypot(dx, dy) <= max_shift * size and 1 / max_scale <= ratio <= max_scale


class FaceTrack:
    """The good frames of one continuous face track, fused: a weighted sum of their embeddings and the
    student each frame found nearest."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.weight = 0.0
        self.frames = 0
        self.nearest: dict[str, int] = {}
        self.last_face: Face | None = None

    def continues(self, face: Face | None) -> bool:
        return face is None or self.last_face is None or same_track(self.last_face, face)

    def add(self, embedding: np.ndarray, weight: float, nearest: str | None) -> None:
        vector = np.asarray(embedding, dtype=np.float64) * weight
        self.total = vector if self.total is None else self.total + vector
        self.weight += weight
        self.frames += 1
        if nearest is not None:
            self.nearest[nearest] = self.nearest.get(nearest, 0) + 1

    def embedding(self) -> np.ndarray | None:
        """The fused embedding (unit norm), None before the first good frame."""
        if self.total is None:
            return None
        return normalise(self.total.astype(np.float32))[0]

    def leading(self) -> tuple[str | None, int]:
        """The student most frames named nearest, and how many did (ties: the latest to get there)."""
        if not self.nearest:
            return None, 0
        label = max(self.nearest, key=self.nearest.__getitem__)
        return label, self.nearest[label]


class AttemptDecider:
    """The state of one sign-in attempt; feed it frame votes until ``observe`` returns a final decision.

    Two ways frames add up (``DecisionConfig.fusion``):

    * "votes": accepted once ``min_frames`` frames voted for one student;
    * "track": the good frames of the current face track (one face, moving as a face moves: see
      ``same_track``; a jump starts a new track and the old one's evidence is dropped) are fused into
      their mean embedding. Accepted once ``min_frames`` of the track's frames named the same
      nearest student, ``fusion_votes`` of them voted for that student on their own, AND the fused
      embedding votes for that student (the open-set gate at the same calibrated threshold, classifier
      and gallery agreeing). Noise, blur and compression move each
      frame's embedding a little in a random direction; their mean moves far less, so a webcam stream
      of the student scores close to a clean photo of them. A stranger's stream scores close to a clean
      photo of the stranger: the threshold is calibrated on clean enrolment photos, exactly that. It
      needs the frames' analyses and the model (``TrainedModel.decider``); without them it counts votes.

    Either way no frame may point confidently at a different student: any such conflict rejects the
    attempt at once (two people in turn in front of the camera, or a look-alike, is not a sign-in).
    Rejected at ``max_frames``, at the deadline, or ("votes") as soon as the frames left cannot reach
    ``min_frames``.

    Not thread-safe: one attempt belongs to one connection.
    """

    def __init__(
        self,
        config: DecisionConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        model: TrainedModel | None = None,
        claim: tuple[str, float] | None = None,
    ) -> None:
        self.config = config or DecisionConfig()
        self._clock = clock
        self._started = clock()
        self._frames = 0
        self._votes: dict[str, int] = {}
        self._seen: dict[str, int] = {}  # students pointed at (per config.conflict), frame counts
        self._decision = Decision(PENDING)
        self._model = model
        self._claim = claim  # verify mode: (the claimed student, the verification threshold)
        self.track = FaceTrack()
        self.fused_vote: FrameVote | None = None  # the fused track's vote when it decided
        self._analysed = False

    @property
    def decision(self) -> Decision:
        return self._decision

    @property
    def fusing(self) -> bool:
        """Deciding on the fused track: configured, with the model, and fed the frames' analyses (a
        caller that passes votes alone gets votes counted)."""
        return self.config.fusion == "track" and self._model is not None and self._analysed

    def _snapshot(self, status: str, label: str | None = None, reason: str | None = None) -> Decision:
        leading = max(self._votes, key=self._votes.__getitem__) if self._votes else None
        conflicts = sum(n for lbl, n in self._seen.items() if lbl != (label or leading))
        votes = dict(self._votes)
        if self.fusing:  # progress: how many of the track's frames name the leading student
            name, count = self.track.leading()
            votes = {name: count} if name is not None else {}
        return Decision(status, label, reason, self._frames, votes, conflicts)

    def _end_reason(self, default: str) -> str:
        # "not recognised" unless some frame voted for someone: a track whose fused embedding never
        # reached the threshold recognised nobody either.
        return default if self._votes else NOT_RECOGNISED

    def observe(self, vote: FrameVote, analysis: FrameAnalysis | None = None) -> Decision:
        if self._decision.final:
            return self._decision
        cfg = self.config
        if cfg.deadline_s is not None and self._clock() - self._started > cfg.deadline_s:
            # A frame that arrives after the deadline does not count.
            self._decision = self._snapshot(REJECTED, reason=self._end_reason(DEADLINE))
            return self._decision
        self._frames += 1
        self._analysed = self._analysed or analysis is not None
        if vote.label is not None:
            self._votes[vote.label] = self._votes.get(vote.label, 0) + 1
        pointed = (vote.label,) if cfg.conflict == "votes" and vote.label else ()
        if cfg.conflict == "confident":
            pointed = vote.confident + ((vote.label,) if vote.label else ())
        for lbl in dict.fromkeys(pointed):
            self._seen[lbl] = self._seen.get(lbl, 0) + 1
        fused = self._fuse(vote, analysis) if len(self._seen) <= 1 else None
        if len(self._seen) > 1:
            self._decision = self._snapshot(REJECTED, reason=CONFLICT)
        elif fused is not None:
            self._decision = self._snapshot(ACCEPTED, label=fused)
        elif not self.fusing and vote.label is not None and self._votes[vote.label] >= cfg.min_frames:
            self._decision = self._snapshot(ACCEPTED, label=vote.label)
        elif self._frames >= cfg.max_frames:
            self._decision = self._snapshot(REJECTED, reason=self._end_reason(MAX_FRAMES))
        elif not self.fusing and max(self._votes.values(), default=0) + (cfg.max_frames - self._frames) < cfg.min_frames:
            # No student can reach min_frames in the frames left: stop spending CPU on this attempt.
            self._decision = self._snapshot(REJECTED, reason=self._end_reason(MAX_FRAMES))
        else:
            self._decision = self._snapshot(PENDING)
        return self._decision

    def new_track(self) -> None:
        """Drop the fused evidence (the caller saw the face track end, e.g. the liveness check)."""
        self.track = FaceTrack()

    def _fuse(self, vote: FrameVote, analysis: FrameAnalysis | None) -> str | None:
        """Add a good frame to the track (kept in either mode: it is the sign-in's face template, see
        ``facelogin.pipeline.drift``); when fusing, the student the fused track votes for, if it does now."""
        if analysis is None or analysis.embedding is None or vote.reason in (NO_FACE, POOR_QUALITY, SEVERAL_FACES):
            return None
        if not self.track.continues(analysis.face):
            self.new_track()
        self.track.last_face = analysis.face
        # Every good frame counts the same: weighting by face size and sharpness measured the same sign-ins
        # (bench.accuracy's live sessions, 5 and 12 frames an attempt).
        weight = 1.0
        nearest = self._claim[0] if self._claim is not None else vote.gallery_label
        self.track.add(analysis.embedding, weight, nearest)
        if not self.fusing:
            return None
        label, count = self.track.leading()
        if label is None or count < self.config.min_frames or self._votes.get(label, 0) < self.config.fusion_votes:
            return None
        fused_vote = self._vote_fused(self.track.embedding(), label)
        if fused_vote is not None and fused_vote.label == label:
            self.fused_vote = fused_vote
            return label
        return None

    def _vote_fused(self, embedding: np.ndarray, label: str) -> FrameVote | None:
        model = self._model
        if self._claim is not None:
            claimed, threshold = self._claim
            if claimed not in model.gallery:
                return None
            similarity = float(model.gallery.score(embedding[None, :], [claimed])[0])
            matched = similarity >= threshold
            return FrameVote(
                label=claimed if matched else None,
                reason=VOTE if matched else BELOW_THRESHOLD,
                classifier_label=claimed,
                gallery_label=claimed,
                similarity=similarity,
                best_similarity=similarity,
                threshold=threshold,
                confident=(claimed,) if matched else (),
            )
        # The full vote (a gallery search) only once the leading student's score could pass: one
        # comparison a frame until then, not a search.
        if float(model.gallery.score(embedding[None, :], [label])[0]) < model.threshold:
            return None
        return vote_frames(model, embedding[None, :])[0]

    def finish(self) -> Decision:
        """The client stopped sending frames: a pending attempt is rejected."""
        if not self._decision.final:
            self._decision = self._snapshot(REJECTED, reason=self._end_reason(MAX_FRAMES))
        return self._decision


class ThesisRule:
    """The thesis's rule, exactly: a frame counts when the softmax MLP's top probability exceeds
    72.349 %; sign in as a student once 5 frames counted for that student. No similarity gate, no
    conflict check. Same ``observe`` / ``finish`` interface as ``AttemptDecider``.

    The thesis counts frames per recognised person; counting per student (not any 5 frames) is the
    reading that does not sign in a mix of people.
    """

    def __init__(
        self,
        *,
        probability: float = THESIS_PROBABILITY,
        min_frames: int = THESIS_MIN_FRAMES,
        max_frames: int | None = None,
    ) -> None:
        self.probability = probability
        self.min_frames = min_frames
        self.max_frames = max_frames
        self._frames = 0
        self._votes: dict[str, int] = {}
        self._decision = Decision(PENDING)

    @property
    def decision(self) -> Decision:
        return self._decision

    def observe(self, vote: FrameVote, analysis: FrameAnalysis | None = None) -> Decision:
        if self._decision.final:
            return self._decision
        self._frames += 1
        label = vote.classifier_label
        if label is not None and vote.probability > self.probability:
            self._votes[label] = self._votes.get(label, 0) + 1
            if self._votes[label] >= self.min_frames:
                self._decision = Decision(ACCEPTED, label, None, self._frames, dict(self._votes))
                return self._decision
        if self.max_frames is not None and self._frames >= self.max_frames:
            return self.finish()
        self._decision = Decision(PENDING, None, None, self._frames, dict(self._votes))
        return self._decision

    def finish(self) -> Decision:
        if not self._decision.final:
            reason = MAX_FRAMES if self._votes else NOT_RECOGNISED
            self._decision = Decision(REJECTED, None, reason, self._frames, dict(self._votes))
        return self._decision


def decide_attempt(
    votes: Sequence[FrameVote],
    rule: AttemptDecider | ThesisRule,
    analyses: Sequence[FrameAnalysis | None] | None = None,
) -> Decision:
    """Feed a finished attempt's votes (and their frames' analyses, when known) to ``rule`` and close
    it (what the benchmark does)."""
    frames = analyses if analyses is not None else [None] * len(votes)
    for vote, analysis in zip(votes, frames, strict=True):
        if rule.observe(vote, analysis).final:
            break
    return rule.finish()


# --- the trained model ---------------------------------------------------------------------------

_MAGIC = b"FLTM"  # facelogin trained model
FORMAT_VERSION = 1  # one blob: ``to_bytes``
PARTS_FORMAT_VERSION = 2  # a head and parts: ``to_parts``
# After the magic and version of a head in parts: how many out-of-band buffers, how many parts, the
# size of a part (each buffer's last is shorter); then each buffer's size (uint64), then the pickle.
_PARTS_HEADER = struct.Struct("<IQQ")
OUT_OF_BAND_MIN_BYTES = 1 << 16  # smaller arrays stay in the head's pickle
BUFFER_ROOM = 4  # from_parts allocates each out-of-band array with 1/BUFFER_ROOM more room past it


@dataclass
class TrainedModel:
    """One classifier version: classifier + gallery + calibration + decision config + embedding model.

    ``model_name`` identifies the embedding model (e.g. ``casia-webface``): embeddings of another model
    are not comparable, so a model whose name differs from the live embedder's must not be used.
    """

    kind: str
    classifier: Classifier
    gallery: Gallery
    calibration: Calibration
    config: DecisionConfig
    model_name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @property
    def labels(self) -> list[str]:
        return self.gallery.labels

    def decider(self, *, clock: Callable[[], float] = time.monotonic) -> AttemptDecider:
        return AttemptDecider(self.config, clock=clock, model=self)

    def vote(self, embedding: np.ndarray | None) -> FrameVote:
        return vote_frame(self, embedding)

    # -- incremental enrolment (distance classifiers only; others need train_model) --
    def add_student(self, label: object, embeddings: np.ndarray) -> None:
        """Enrol one student without a refit (centroid / knn). The threshold is NOT recalibrated here;
        a periodic retrain does that (the gallery size it was calibrated for is in ``calibration``)."""
        if not isinstance(self.classifier, IncrementalClassifier):
            raise errors.NotTrained(f"classifier {self.kind!r} cannot add a student without retraining")
        self.gallery.add(label, embeddings)
        if getattr(self.classifier, "gallery", None) is not self.gallery:
            self.classifier.add(label, embeddings)

    def remove_student(self, label: object) -> int:
        if not isinstance(self.classifier, IncrementalClassifier):
            raise errors.NotTrained(f"classifier {self.kind!r} cannot drop a student without retraining")
        removed = self.gallery.remove(label)
        if getattr(self.classifier, "gallery", None) is not self.gallery:
            self.classifier.remove(label)
        return removed

    # -- bytes --
    def to_bytes(self) -> bytes:
        """``FLTM`` + version byte + pickle of an envelope. The app encrypts this blob at rest with an
        authenticated cipher; ``from_bytes`` additionally refuses anything but numpy / scikit-learn /
        scipy / this package's classes, so a swapped blob cannot name arbitrary callables."""
        envelope = self._envelope(FORMAT_VERSION)
        return _MAGIC + bytes([FORMAT_VERSION]) + pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)

    def _envelope(self, version: int) -> dict[str, Any]:
        """What is pickled: the model and the versions that made it (for an operator reading a blob)."""
        import sklearn

        return {
            "format": "facelogin.trained_model",
            "version": version,
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "model": self,
        }

    @classmethod
    def _model_in(cls, envelope: Any) -> TrainedModel:
        model = envelope.get("model") if isinstance(envelope, dict) else None
        if not isinstance(model, cls):
            raise errors.ModelUnavailable("trained model envelope holds no model")
        return model

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        if len(data) < 5 or data[:4] != _MAGIC:
            raise errors.ModelUnavailable("not a trained face model")
        if data[4] == PARTS_FORMAT_VERSION:
            raise errors.ModelUnavailable("trained model is stored in parts: read it with from_parts")
        if data[4] != FORMAT_VERSION:
            raise errors.ModelUnavailable(f"trained model format {data[4]} is not supported", version=data[4])
        try:
            envelope = _RestrictedUnpickler(io.BytesIO(data[5:])).load()
        except Exception as exc:  # corrupt, truncated, or naming a forbidden class
            raise errors.ModelUnavailable(f"trained model could not be read: {exc}") from exc
        return cls._model_in(envelope)

    def to_parts(self, *, part_bytes: int, out_of_band_min: int | None = None) -> tuple[bytes, list[memoryview]]:
        """(head, parts): the model for a store that limits one value's size (a database field: 1 GB;
        the model is 1,028 MB at 100,000 students) and for a loader that should not hold the model's
        bytes beside its arrays (``from_parts``).

        The head is ``FLTM`` + version 2 + the out-of-band buffers' count and sizes, the parts' count
        and size + the envelope pickled with protocol 5, its arrays of at least ``out_of_band_min`` bytes
        (default: 64 KiB or one part, whichever is less) out of band (pickle's ``buffer_callback``). The parts are those arrays' bytes in order, each cut
        into pieces of at most ``part_bytes``; a part never spans two arrays. They are views of the
        pickled arrays, not copies. Sealing both is the app's job, as for ``to_bytes``.
        """
        if out_of_band_min is None:
            out_of_band_min = min(OUT_OF_BAND_MIN_BYTES, part_bytes)
        if part_bytes < 1 or out_of_band_min < 1:
            raise ValueError("part_bytes and out_of_band_min must be positive")
        envelope = self._envelope(PARTS_FORMAT_VERSION)
        buffers: list[memoryview] = []

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            view = buffer.raw()
            if view.nbytes < out_of_band_min:
                return True  # pickled in band
            buffers.append(view)
            return False

        stream = pickle.dumps(envelope, protocol=5, buffer_callback=out_of_band)
        parts = [view[at : at + part_bytes] for view in buffers for at in range(0, view.nbytes, part_bytes)]
        sizes = struct.pack(f"<{len(buffers)}Q", *(view.nbytes for view in buffers))
        header = _PARTS_HEADER.pack(len(buffers), len(parts), part_bytes)
        head = _MAGIC + bytes([PARTS_FORMAT_VERSION]) + header + sizes + stream
        return head, parts

    @staticmethod
    def parts_in(head: bytes) -> tuple[int, int]:
        """(parts, bytes of all parts) that a head from ``to_parts`` needs; (0, 0) for ``to_bytes``'s blob."""
        layout, _ = _parse_head(head)
        return len(layout), sum(size for _, _, size in layout)

    @classmethod
    def from_parts(cls, head: bytes, part: Callable[[int], bytes]) -> TrainedModel:
        """The model from ``to_parts``'s head and ``part(i)``, its parts' bytes (unsealed) by index.

        Memory: each array is allocated once at its final size and filled part by part, then handed to
        the unpickler (``pickle.loads(..., buffers=...)``), which wraps it without a copy; so a loader
        holds the arrays and one part, never the model's bytes besides. Each allocation has room for a
        quarter more past the array (``BUFFER_ROOM``; calloc'd, so not resident until written), where
        the gallery's next version appends rows (``Gallery.copy``). ``to_bytes``'s one blob is
        read too (``part`` is then not called). A part of another size than the head says is refused
        (``part`` itself raises for a missing one).
        """
        layout, stream_at = _parse_head(head)
        if not stream_at:
            return cls.from_bytes(head)
        buffers: dict[int, np.ndarray] = {}
        for index, (buffer, offset, size) in enumerate(layout):
            data = memoryview(part(index))
            if data.nbytes != size:
                raise errors.ModelUnavailable(f"trained model part {index + 1} of {len(layout)} holds {data.nbytes} bytes, not {size} (torn)")
            if buffer not in buffers:
                total = _buffer_size(layout, buffer)
                buffers[buffer] = np.zeros(total + total // BUFFER_ROOM, dtype=np.uint8)
            buffers[buffer][offset : offset + size] = np.frombuffer(data, dtype=np.uint8)
            del data
        views = [memoryview(buffers[b])[: _buffer_size(layout, b)] for b in sorted(buffers)]
        try:
            envelope = _RestrictedUnpickler(io.BytesIO(memoryview(head)[stream_at:]), buffers=views).load()
        except Exception as exc:  # corrupt, or naming a forbidden class
            raise errors.ModelUnavailable(f"trained model could not be read: {exc}") from exc
        del buffers, views  # the arrays hold them now
        return cls._model_in(envelope)

    def summary(self) -> dict[str, Any]:
        """Plain values to store next to the blob and show an operator."""
        return {
            "kind": self.kind,
            "model_name": self.model_name,
            "students": self.gallery.n_labels,
            "embeddings": self.gallery.n_rows,
            "threshold": self.threshold,
            "calibration": self.calibration.to_dict(),
            "config": asdict(self.config),
            "metrics": self.metrics,
            "created_at": self.created_at,
            "format_version": self.format_version,
        }


def _parse_head(head: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """(per part: its buffer, its offset there, its size; where the pickle starts) of a head from
    ``to_parts``; ([], 0) for ``to_bytes``'s one blob."""
    if len(head) < 5 or head[:4] != _MAGIC:
        raise errors.ModelUnavailable("not a trained face model")
    if head[4] == FORMAT_VERSION:
        return [], 0
    if head[4] != PARTS_FORMAT_VERSION:
        raise errors.ModelUnavailable(f"trained model format {head[4]} is not supported", version=head[4])
    at = 5 + _PARTS_HEADER.size
    if len(head) < at:
        raise errors.ModelUnavailable("trained model head is truncated")
    n_buffers, parts, part_bytes = _PARTS_HEADER.unpack_from(head, 5)
    if len(head) < at + 8 * n_buffers or part_bytes < 1:
        raise errors.ModelUnavailable("trained model head is truncated")
    layout = [
        (buffer, offset, min(part_bytes, size - offset))
        for buffer, size in enumerate(struct.unpack_from(f"<{n_buffers}Q", head, at))
        for offset in range(0, size, part_bytes)
    ]
    if len(layout) != parts:
        raise errors.ModelUnavailable(f"trained model head is inconsistent: {parts} parts for arrays that take {len(layout)}")
    return layout, at + 8 * n_buffers


def _buffer_size(layout: list[tuple[int, int, int]], buffer: int) -> int:
    return max(offset + size for b, offset, size in layout if b == buffer)


# What a trained-model pickle may name. The blob is sealed (authenticated encryption) by the app, so
# this is a second wall, not the first: a blob must not be able to name an arbitrary callable (numpy's
# ``testing.runstring`` executes code) or a class whose constructor touches files (``numpy.memmap``).
# scikit-learn estimators' constructors only store their parameters, so any sklearn class is allowed.
_ALLOWED_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
}
_ALLOWED_CLASS_MODULES = ("numpy.dtypes", "numpy.random.", "sklearn.", "facelogin.pipeline.")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy.dtypes" or module.startswith(_ALLOWED_CLASS_MODULES):
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


# --- training ------------------------------------------------------------------------------------


def _split(labels: Sequence[str], holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per student, hold out round(holdout * photos) photos, always leaving at least two enrolled (one
    to enrol, one for leave-one-out calibration); students with fewer than three photos stay whole."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, lbl in enumerate(labels):
        by_label.setdefault(lbl, []).append(i)
    train, test = [], []
    for lbl in sorted(by_label):
        rows = np.array(by_label[lbl])
        k = min(int(round(holdout * len(rows))), len(rows) - 2) if len(rows) >= 3 else 0
        k = max(k, 1) if holdout > 0 and len(rows) >= 3 else k
        perm = rng.permutation(rows)
        test.extend(perm[:k].tolist())
        train.extend(perm[k:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def _build(
    X: np.ndarray,
    y: list[str],
    *,
    kind: str,
    classifier_params: dict[str, Any],
    config: DecisionConfig,
    model_name: str,
    target_fpir: float,
    gallery_size: int | None,
    top_k: int,
    floor: float,
    tail_method: str,
    seed: int,
    ceiling: float = 1.0,
) -> TrainedModel:
    gallery = Gallery.from_arrays(X, y, top_k=top_k)
    if kind in ("centroid", "knn") and classifier_params.get("k", top_k) == top_k:
        # Share the gallery: one copy of the embeddings (300 MB at 30,000 students x 5 photos).
        classifier = make_classifier(kind, **classifier_params)
        classifier.gallery = gallery  # type: ignore[attr-defined]
    else:
        classifier = make_classifier(kind, **classifier_params).fit(X, y)
    calibration = calibrate(
        X,
        y,
        target_fpir=target_fpir,
        gallery_size=gallery_size,
        top_k=top_k,
        floor=floor,
        method=tail_method,
        seed=seed,
        ceiling=ceiling,
    )
    return TrainedModel(kind, classifier, gallery, calibration, config, model_name)


def train_model(
    embeddings: np.ndarray,
    labels: Sequence[object],
    *,
    kind: str = "centroid",
    target_fpir: float = 0.001,
    holdout: float = 0.2,
    config: DecisionConfig | None = None,
    model_name: str = "casia-webface",
    gallery_size: int | None = None,
    top_k: int = 1,
    floor: float = DEFAULT_FLOOR,
    tail_method: str = "gpd",
    classifier_params: dict[str, Any] | None = None,
    seed: int = 0,
    ceiling: float = 1.0,
    max_holdout_probes: int = 3_000,
) -> TrainedModel:
    """Train one classifier version on the enrolled embeddings, calibrated on them.

    With ``holdout`` > 0, a per-student split first measures the whole pipeline on photos it did not
    see (rank-1 accuracy of the classifier and the gallery, per-frame genuine accept at the threshold
    calibrated on the rest, and per-frame wrong-student votes); the returned model is then trained and
    calibrated on ALL embeddings. The app stores ``metrics`` with the version and refuses to activate
    a version that measures worse than configured.
    """
    X = normalise(embeddings)
    y = [str(v) for v in labels]
    if len(X) != len(y):
        raise ValueError("embeddings and labels differ in length")
    config = config or DecisionConfig()
    params = dict(classifier_params or {})
    common = dict(
        kind=kind,
        classifier_params=params,
        config=config,
        model_name=model_name,
        target_fpir=target_fpir,
        gallery_size=gallery_size,
        top_k=top_k,
        floor=floor,
        tail_method=tail_method,
        seed=seed,
        ceiling=ceiling,
    )
    metrics: dict[str, Any] = {}
    if holdout > 0:
        train, test = _split(y, holdout, seed)
        if len(test) > max_holdout_probes:
            # A sample measures as well (+/- 1 % at 3,000) and keeps a 30,000-student retrain from
            # spending minutes voting every held-out photo; the trial model still trains on all of train.
            test = np.sort(np.random.default_rng(seed).choice(test, size=max_holdout_probes, replace=False))
        if len(test):
            t0 = time.perf_counter()
            trial = _build(X[train], [y[i] for i in train], **common)
            fit_s = time.perf_counter() - t0
            metrics["holdout"] = holdout_metrics(trial, X[test], [y[i] for i in test])
            metrics["holdout"]["fit_seconds"] = fit_s
            metrics["holdout"]["train_embeddings"] = len(train)
    t0 = time.perf_counter()
    model = _build(X, y, **common)
    metrics["fit_seconds"] = time.perf_counter() - t0
    metrics["threshold"] = model.threshold
    metrics["calibration_genuine_accept_rate"] = model.calibration.genuine_accept_rate
    model.metrics = metrics
    return model


def holdout_metrics(model: TrainedModel, X: np.ndarray, y: Sequence[str]) -> dict[str, Any]:
    """Closed-set and per-frame metrics of ``model`` on labelled embeddings of enrolled students."""
    votes = vote_frames(model, X)
    n = len(votes)
    if not n:
        return {"frames": 0}
    cls_ok = sum(v.classifier_label == t for v, t in zip(votes, y))
    gal_ok = sum(v.gallery_label == t for v, t in zip(votes, y))
    genuine = sum(v.label == t for v, t in zip(votes, y))
    wrong = sum(v.label is not None and v.label != t for v, t in zip(votes, y))
    return {
        "frames": n,
        "rank1_accuracy": cls_ok / n,
        "gallery_rank1_accuracy": gal_ok / n,
        "genuine_accept_rate": genuine / n,
        "wrong_accept_rate": wrong / n,
        "threshold": model.threshold,
    }


def with_config(model: TrainedModel, **changes: Any) -> TrainedModel:
    """A shallow copy of ``model`` with decision settings changed (shares classifier and gallery)."""
    return replace(model, config=replace(model.config, **changes))
