"""Appearance drift: when may a sign-in's own face template join the student's gallery?

Faces change (a beard, glasses, a haircut, a year older). After a face sign-in that passed the liveness
challenge, the track's fused embedding (``decide.FaceTrack``) may be kept as one more template of the
student, so the next sign-in meets a gallery that has followed them. A template that joins the gallery
makes everything near it easier to sign in as that student, so the rule is built so that it cannot walk
the gallery towards someone else:

* the sign-in itself was clear: the template scores at least ``above_threshold`` over the threshold
  against the student's gallery;
* it is close to the student's REGISTRAR-ENROLLED photos (the anchors), at least the threshold itself:
  a drift template is never an anchor, so templates cannot chain away from the enrolment one step at a
  time (every kept template is within the threshold's angle of an anchor);
* it is clearly away from every other student: at most the threshold minus ``away_from_others`` against
  every other student's gallery (their anchors and their own drift templates);
* it adds something: not within ``duplicate`` of a template the student already has.

The caller (``facelogin.services.drift``) keeps at most a cap per student, oldest out; never keeps one
from a sign-in without liveness, and drops them all when the student reports a sign-in as not theirs.
Plain numpy; no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classify import Gallery, normalise

ADMITTED = "admitted"
WEAK_MATCH = "weak_match"  # the sign-in was not clearly above the threshold
FAR_FROM_ANCHORS = "far_from_anchors"
NEAR_OTHER_STUDENT = "near_other_student"
DUPLICATE = "duplicate"
NO_ANCHORS = "no_anchors"


@dataclass(frozen=True)
class DriftRules:
    # Over the threshold against the student's gallery. Genuine live sign-ins fuse to 0.80-0.95 against
    # thresholds of 0.70-0.72 (bench.accuracy's live protocol); a sign-in that only just passed is not
    # evidence enough to learn from.
    above_threshold: float = 0.05
    # Against the registrar's photos, at least the threshold plus this (0: the threshold itself).
    anchor_margin: float = 0.0
    # Below the threshold against any other student by at least this: 0.1 in cosine is about the gap
    # between the calibrated threshold and the 99.9th percentile of impostor scores on these datasets.
    away_from_others: float = 0.10
    duplicate: float = 0.98


@dataclass(frozen=True)
class DriftVerdict:
    admit: bool
    reason: str
    similarity: float  # to the student's gallery (anchors and drift templates), as the login scores it
    anchor_similarity: float  # to the closest registrar photo
    other_similarity: float  # to the closest other student
    other_student: str | None


def drift_verdict(
    template: np.ndarray,
    *,
    student: str,
    gallery: Gallery,
    anchors: np.ndarray,
    kept: np.ndarray | None,
    threshold: float,
    rules: DriftRules | None = None,
) -> DriftVerdict:
    """May ``template`` (a unit 512-d embedding) join ``student``'s gallery?

    ``gallery`` is the active model's (every student, anchors and drift templates, as the login
    searches it); ``anchors`` the student's registrar photos' embeddings; ``kept`` their drift templates.
    The other students are scored exactly (one pass over the gallery: 24 ms at 30,000 students x 5
    photos on one thread, 0.24 ms at 1,000; once per sign-in clearly above the threshold, not per frame).
    """
    rules = rules or DriftRules()
    t = normalise(template)
    scores = gallery.similarities(t)[0] if gallery.n_labels else np.zeros(0, np.float32)
    labels = gallery.labels
    mine = labels.index(student) if student in gallery else -1
    own = float(scores[mine]) if mine >= 0 else float("-inf")
    others = scores.copy()
    if mine >= 0:
        others[mine] = -np.inf
    best = int(np.argmax(others)) if len(others) else -1
    other_similarity = float(others[best]) if best >= 0 and np.isfinite(others[best]) else float("-inf")
    other_student = labels[best] if best >= 0 and np.isfinite(others[best]) else None
    anchor_similarity = float((normalise(anchors) @ t[0]).max()) if len(anchors) else float("-inf")

    def verdict(reason: str) -> DriftVerdict:
        return DriftVerdict(reason == ADMITTED, reason, own, anchor_similarity, other_similarity, other_student)

    if not len(anchors):
        return verdict(NO_ANCHORS)
    if own < threshold + rules.above_threshold:
        return verdict(WEAK_MATCH)
    if anchor_similarity < threshold + rules.anchor_margin:
        return verdict(FAR_FROM_ANCHORS)
    if other_similarity > threshold - rules.away_from_others:
        return verdict(NEAR_OTHER_STUDENT)
    if kept is not None and len(kept) and float((normalise(kept) @ t[0]).max()) >= rules.duplicate:
        return verdict(DUPLICATE)
    return verdict(ADMITTED)
