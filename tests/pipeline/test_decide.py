"""Frame votes, attempt decisions, the thesis's rule and the trained model (no models, no database)."""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import replace

import numpy as np
import pytest

from facelogin.pipeline import errors, types
from facelogin.pipeline.classify import normalise
from facelogin.pipeline.decide import (
    ACCEPTED,
    PENDING,
    REJECTED,
    AttemptDecider,
    DecisionConfig,
    FrameVote,
    ThesisRule,
    TrainedModel,
    decide_attempt,
    recognise_batch,
    train_model,
    vote_analyses,
    vote_analysis,
    vote_claim,
    vote_frame,
    vote_frames,
    with_config,
)

NOISE = 0.7  # same-student cosine ~0.67, different students ~0 (FaceNet-like on these datasets)


def centres(n: int, seed: int) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, 512)))


def photos(c: np.ndarray, per: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return normalise(np.repeat(c, per, axis=0) + NOISE * normalise(rng.standard_normal((len(c) * per, 512))))


ENROLLED = centres(30, seed=1)
STRANGERS = centres(20, seed=2)
LABELS = [f"stu{i:03d}" for i in range(30)]


def _analysis(embedding: np.ndarray | None, *, faces: int = 1) -> types.FrameAnalysis:
    face = types.Face(
        box=(10, 10, 110, 130), probability=0.99, landmarks=((40, 50), (80, 50), (60, 75), (45, 100), (75, 100))
    )
    detection = types.Detection(faces=(face,) * faces, image_size=(200, 200))
    good = types.QualityReport(face_px=100, brightness=120, sharpness=200, pose=types.Pose(0, 0, 0))
    return types.FrameAnalysis(detection, face if faces else None, good if faces else None, embedding=embedding)


def test_a_batch_is_voted_as_its_frames_one_at_a_time_with_errors_in_place(model: TrainedModel) -> None:
    students = photos(ENROLLED[:3], 1, seed=71)
    stranger = photos(centres(1, seed=72), 1, seed=73)[0]
    bad = errors.ImageError("not an image")
    batch = [_analysis(students[0]), bad, _analysis(stranger), _analysis(None, faces=0), _analysis(students[2], faces=2), _analysis(students[1])]
    recognised = recognise_batch(model, batch)
    assert recognised[1] is bad  # that frame's error, for its own socket only
    for result, analysis in zip(recognised, batch, strict=True):
        if analysis is bad:
            continue
        assert result.analysis is analysis and result.model is model
        alone = vote_analysis(model, analysis)  # one batched search, the same votes (to rounding)
        assert (result.vote.label, result.vote.reason, result.vote.confident) == (alone.label, alone.reason, alone.confident)
        assert (result.vote.similarity, result.vote.probability) == (pytest.approx(alone.similarity), pytest.approx(alone.probability))
    assert [r.vote.label for r in recognised if r is not bad] == [LABELS[0], None, None, None, LABELS[1]]


def test_a_batch_before_any_model_is_analysed_but_not_voted() -> None:
    analysis = _analysis(photos(ENROLLED[:1], 1, seed=74)[0])
    [recognised] = recognise_batch(None, [analysis])
    assert recognised.analysis is analysis and recognised.model is None and recognised.vote is None


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    X = photos(ENROLLED, 5, seed=3)
    y = np.repeat(LABELS, 5).tolist()
    return train_model(X, y, kind="centroid", holdout=0.2)


def vote(label: str | None, *, confident: tuple[str, ...] | None = None, probability: float = 0.9) -> FrameVote:
    return FrameVote(
        label=label,
        reason="vote" if label else "below_threshold",
        classifier_label=label,
        probability=probability,
        gallery_label=label,
        similarity=0.8 if label else 0.1,
        best_similarity=0.8 if label else 0.1,
        second_similarity=0.1,
        threshold=0.5,
        confident=confident if confident is not None else ((label,) if label else ()),
    )


# --- frames ----------------------------------------------------------------------------------


def test_an_enrolled_students_frame_votes_for_them(model: TrainedModel) -> None:
    frames = photos(ENROLLED[:10], 1, seed=50)
    votes = vote_frames(model, frames)
    assert [v.label for v in votes] == LABELS[:10]
    assert all(v.similarity >= model.threshold and v.reason == "vote" for v in votes)
    assert vote_frame(model, frames[0]).label == LABELS[0]


def test_a_strangers_frames_never_vote(model: TrainedModel) -> None:
    votes = vote_frames(model, photos(STRANGERS, 10, seed=60))
    assert all(v.label is None for v in votes)
    assert {v.reason for v in votes} == {"below_threshold"}
    assert all(v.classifier_label in LABELS for v in votes)  # the closed-set guess exists, the gate stops it


def test_a_stranger_is_never_signed_in(model: TrainedModel) -> None:
    votes = vote_frames(model, photos(STRANGERS, 10, seed=61))
    for i in range(len(STRANGERS)):
        decision = decide_attempt(votes[i * 10 : (i + 1) * 10], model.decider())
        assert decision.status == REJECTED and decision.reason == "not_recognised"


def test_a_frame_without_one_good_face_gives_no_vote(model: TrainedModel) -> None:
    embedding = photos(ENROLLED[:1], 1, seed=70)[0]
    face = types.Face(
        box=(10, 10, 110, 130), probability=0.99, landmarks=((40, 50), (80, 50), (60, 75), (45, 100), (75, 100))
    )
    detection = types.Detection(faces=(face,), image_size=(200, 200))
    good = types.QualityReport(face_px=100, brightness=120, sharpness=200, pose=types.Pose(0, 0, 0))
    dark = types.QualityReport(
        face_px=100,
        brightness=20,
        sharpness=200,
        pose=types.Pose(0, 0, 0),
        issues=(types.QualityIssue("too_dark", "The picture is too dark.", 20, 50),),
    )
    ok = vote_analysis(model, types.FrameAnalysis(detection, face, good, embedding=embedding))
    assert ok.label == LABELS[0]
    assert vote_analysis(model, types.FrameAnalysis(detection, face, dark, embedding=embedding)).reason == "quality"
    empty = types.Detection(faces=(), image_size=(200, 200))
    assert vote_analysis(model, types.FrameAnalysis(empty, None, None)).reason == "no_face"
    two = types.Detection(faces=(face, face), image_size=(200, 200))
    assert vote_analysis(model, types.FrameAnalysis(two, face, good, embedding=embedding)).reason == "several_faces"
    assert vote_frame(model, None).label is None


def test_a_frame_the_classifier_and_gallery_disagree_on_gives_no_vote(model: TrainedModel) -> None:
    class Contrary:
        kind = "contrary"
        classes = LABELS

        def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
            return [LABELS[1]] * len(X), np.ones(len(X))

    contrary = TrainedModel("contrary", Contrary(), model.gallery, model.calibration, model.config, "test")  # type: ignore[arg-type]
    v = vote_frame(contrary, photos(ENROLLED[:1], 1, seed=71)[0])
    assert v.label is None and v.reason == "below_threshold"  # the classifier's student does not match
    # A face between students 0 and 1, nearer 0: the classifier's student 1 passes the threshold, but
    # the gallery's nearest is student 0, so the frame does not vote (and points at both).
    probe = normalise(ENROLLED[0] + ENROLLED[1] * 0.9)[0]
    v = vote_frame(contrary, probe)
    assert v.similarity >= contrary.threshold and v.gallery_label == LABELS[0]
    assert v.label is None and v.reason == "disagree"
    assert set(v.confident) == {LABELS[0], LABELS[1]}


def test_a_margin_and_a_probability_floor_can_be_required(model: TrainedModel) -> None:
    from dataclasses import replace

    frame = photos(ENROLLED[:1], 1, seed=72)[0]
    strict = replace(model, config=DecisionConfig(margin=0.99))
    assert vote_frame(strict, frame).reason == "low_margin"
    sure = replace(model, config=DecisionConfig(min_probability=1.01))
    assert vote_frame(sure, frame).reason == "low_probability"


# --- attempts --------------------------------------------------------------------------------


def test_min_frames_are_respected() -> None:
    decider = AttemptDecider(DecisionConfig(min_frames=3, max_frames=10))
    assert decider.observe(vote("a")).status == PENDING
    assert decider.observe(vote(None)).status == PENDING
    assert decider.observe(vote("a")).status == PENDING
    d = decider.observe(vote("a"))
    assert d.status == ACCEPTED and d.label == "a" and d.frames == 4 and d.votes == {"a": 3}
    assert decider.observe(vote("b")) is d  # final decisions do not change


def test_conflicting_frames_reject_the_attempt() -> None:
    decider = AttemptDecider(DecisionConfig(min_frames=3))
    decider.observe(vote("a"))
    decider.observe(vote("a"))
    d = decider.observe(vote("b"))
    assert d.status == REJECTED and d.reason == "conflict" and d.label is None
    assert decider.observe(vote("a")).reason == "conflict"


def test_a_confident_frame_for_someone_else_conflicts_even_without_a_vote() -> None:
    decider = AttemptDecider(DecisionConfig(min_frames=2))
    decider.observe(vote("a"))
    d = decider.observe(vote(None, confident=("b",)))
    assert d.status == REJECTED and d.reason == "conflict"
    # Counting only votes, the same frames do not conflict.
    lenient = AttemptDecider(DecisionConfig(min_frames=2, conflict="votes"))
    lenient.observe(vote("a"))
    assert lenient.observe(vote(None, confident=("b",))).status == PENDING
    assert lenient.observe(vote("a")).status == ACCEPTED


def test_attempts_end_at_max_frames_or_when_out_of_reach() -> None:
    decider = AttemptDecider(DecisionConfig(min_frames=3, max_frames=4))
    decider.observe(vote("a"))
    decider.observe(vote(None))
    d = decider.observe(vote(None))  # one frame left, two votes missing
    assert d.status == REJECTED and d.reason == "max_frames"
    nobody = AttemptDecider(DecisionConfig(min_frames=3, max_frames=4))
    for _ in range(2):
        d = nobody.observe(vote(None))
    assert d.status == REJECTED and d.reason == "not_recognised"
    unfinished = AttemptDecider(DecisionConfig(min_frames=3, max_frames=10))
    unfinished.observe(vote("a"))
    assert unfinished.finish().reason == "max_frames"


def test_attempts_end_at_the_deadline() -> None:
    now = [0.0]
    decider = AttemptDecider(DecisionConfig(min_frames=2, deadline_s=5.0), clock=lambda: now[0])
    decider.observe(vote("a"))
    now[0] = 6.0
    d = decider.observe(vote("a"))  # too late to count
    assert d.status == REJECTED and d.reason == "deadline" and d.frames == 1


def test_config_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError):
        DecisionConfig(min_frames=5, max_frames=3)
    with pytest.raises(ValueError):
        DecisionConfig(conflict="sometimes")


# --- the thesis's rule ----------------------------------------------------------------------


def test_the_thesis_rule_needs_five_frames_above_72_349_percent() -> None:
    rule = ThesisRule()
    for _ in range(4):
        assert rule.observe(vote("a", probability=0.8)).status == PENDING
    assert rule.observe(vote("a", probability=0.72349)).status == PENDING  # "exceeds": not equal
    d = rule.observe(vote("a", probability=0.7235))
    assert d.status == ACCEPTED and d.label == "a" and d.frames == 6


def test_the_thesis_rule_counts_per_student_and_has_no_open_set_gate() -> None:
    rule = ThesisRule()
    for label in "ababab":
        rule.observe(vote(label, probability=0.99))
    assert rule.decision.status == PENDING  # 3 + 3 frames: nobody has 5, and no conflict check either
    rule.observe(vote("a", probability=0.99))
    rule.observe(vote("a", probability=0.99))
    assert rule.decision.status == ACCEPTED and rule.decision.label == "a"
    # A stranger's frames carry a closed-set guess; with a confident MLP the thesis signs them in.
    stranger = FrameVote(label=None, reason="below_threshold", classifier_label="a", probability=0.95, similarity=0.05)
    rule = ThesisRule()
    assert decide_attempt([stranger] * 5, rule).status == ACCEPTED
    assert decide_attempt([stranger] * 4, ThesisRule()).reason == "max_frames"


# --- the trained model ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["centroid", "knn", "logreg", "svm", "mlp"])
def test_a_trained_model_round_trips_through_bytes(kind: str) -> None:
    X = photos(ENROLLED[:8], 5, seed=4)
    y = np.repeat(LABELS[:8], 5).tolist()
    params = {"hidden_layer_sizes": (32,)} if kind == "mlp" else None
    model = train_model(X, y, kind=kind, holdout=0.2, classifier_params=params, model_name="casia-webface")
    blob = model.to_bytes()
    assert blob[:4] == b"FLTM"
    again = TrainedModel.from_bytes(blob)
    assert again.kind == kind and again.model_name == "casia-webface"
    assert again.threshold == model.threshold and again.labels == model.labels
    assert again.metrics == model.metrics
    probes = photos(ENROLLED[:8], 1, seed=5)
    assert [v.label for v in vote_frames(again, probes)] == [v.label for v in vote_frames(model, probes)]
    # In parts (how the app stores it): a head and the arrays' bytes cut into 1 KiB pieces.
    head, parts = model.to_parts(part_bytes=1024)
    assert len(parts) > 10 and max(p.nbytes for p in parts) == 1024
    assert TrainedModel.parts_in(head) == (len(parts), sum(p.nbytes for p in parts))
    in_parts = TrainedModel.from_parts(head, lambda i: bytes(parts[i]))
    assert in_parts.threshold == model.threshold and in_parts.labels == model.labels and in_parts.metrics == model.metrics
    np.testing.assert_array_equal(in_parts.gallery.embeddings, model.gallery.embeddings)
    assert [v.label for v in vote_frames(in_parts, probes)] == [v.label for v in vote_frames(model, probes)]
    assert TrainedModel.from_parts(blob, lambda i: pytest.fail("one blob has no parts")).labels == model.labels
    h = model.metrics["holdout"]
    assert h["frames"] == 8 and h["rank1_accuracy"] == 1.0 and h["wrong_accept_rate"] == 0.0


def test_from_bytes_refuses_foreign_or_hostile_blobs(model: TrainedModel) -> None:
    with pytest.raises(errors.ModelUnavailable):
        TrainedModel.from_bytes(b"not a model")
    blob = model.to_bytes()
    with pytest.raises(errors.ModelUnavailable):
        TrainedModel.from_bytes(blob[:4] + bytes([99]) + blob[5:])  # a future format
    with pytest.raises(errors.ModelUnavailable):
        TrainedModel.from_bytes(blob[: len(blob) // 2])  # truncated

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    hostile = b"FLTM" + bytes([1]) + pickle.dumps({"model": Evil()})
    with pytest.raises(errors.ModelUnavailable, match="forbidden"):
        TrainedModel.from_bytes(hostile)

    class Clobber:  # a class whose constructor writes a file
        def __reduce__(self):
            return (np.memmap, ("/tmp/facelogin-should-not-exist", np.uint8, "w+", 0, (1,)))

    with pytest.raises(errors.ModelUnavailable, match="forbidden"):
        TrainedModel.from_bytes(b"FLTM" + bytes([1]) + pickle.dumps({"model": Clobber()}))


def test_from_parts_refuses_missing_extra_short_or_hostile_parts(model: TrainedModel) -> None:
    head, parts = model.to_parts(part_bytes=4096)
    whole = [bytes(p) for p in parts]
    with pytest.raises(errors.ModelUnavailable, match="not a trained face model"):
        TrainedModel.from_parts(b"not a model", whole.__getitem__)
    n = len(whole)
    with pytest.raises(errors.ModelUnavailable, match=f"part 3 of {n} holds 4097 bytes, not 4096"):
        TrainedModel.from_parts(head, lambda i: whole[i] + b"x" if i == 2 else whole[i])
    with pytest.raises(errors.ModelUnavailable, match=f"part 3 of {n} holds 4095 bytes"):
        TrainedModel.from_parts(head, lambda i: whole[i][:-1] if i == 2 else whole[i])
    with pytest.raises(errors.ModelUnavailable, match="truncated"):
        TrainedModel.from_parts(head[:8], whole.__getitem__)
    claims_more = head[:9] + struct.pack("<Q", n + 1) + head[17:]  # the head's count of parts, changed
    with pytest.raises(errors.ModelUnavailable, match=f"{n + 1} parts for arrays that take {n}"):
        TrainedModel.from_parts(claims_more, whole.__getitem__)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    hostile = b"FLTM" + bytes([2]) + struct.pack("<IQQ", 0, 0, 1) + pickle.dumps({"model": Evil()}, protocol=5)
    with pytest.raises(errors.ModelUnavailable, match="forbidden"):
        TrainedModel.from_parts(hostile, whole.__getitem__)
    with pytest.raises(errors.ModelUnavailable, match="stored in parts"):
        TrainedModel.from_bytes(head)


def test_a_distance_model_enrols_and_drops_a_student_without_retraining(model: TrainedModel) -> None:
    m = TrainedModel.from_bytes(model.to_bytes())
    newcomer = STRANGERS[:1]
    frame = photos(newcomer, 1, seed=80)[0]
    assert vote_frame(m, frame).label is None
    m.add_student("newcomer", photos(newcomer, 5, seed=81))
    assert vote_frame(m, frame).label == "newcomer"
    assert m.remove_student("newcomer") == 5
    assert vote_frame(m, frame).label is None
    # The blob shares one gallery between classifier and gate (one copy of the embeddings).
    assert m.classifier.gallery is m.gallery  # type: ignore[attr-defined]


def test_closed_set_models_must_be_retrained_to_enrol() -> None:
    X = photos(ENROLLED[:4], 4, seed=6)
    m = train_model(X, np.repeat(LABELS[:4], 4).tolist(), kind="logreg", holdout=0)
    with pytest.raises(errors.NotTrained):
        m.add_student("x", X[:2])


def test_the_summary_is_plain_values(model: TrainedModel) -> None:
    import json

    s = model.summary()
    json.dumps(s)
    assert s["students"] == 30 and s["threshold"] == model.threshold
    assert s["metrics"]["holdout"]["frames"] == 30


# --- real faces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def johns(faces_dir, embedder) -> dict[str, list]:
    """Every johns image through the live analyzer: {identity: [FrameAnalysis in file order]}."""
    analyze = pytest.importorskip("facelogin.pipeline.analyze")
    analyzer = analyze.FaceAnalyzer(analyze.AnalyzerConfig(), embedder)
    out = {}
    for folder in sorted((faces_dir / "johns").iterdir()):
        out[folder.name] = [
            analyzer.analyze_bytes(p.read_bytes(), purpose="login") for p in sorted(folder.glob("*.jpg"))
        ]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stranger", range(5))
def test_real_faces_sign_in_their_owner_and_never_a_stranger(johns: dict[str, list], stranger: int) -> None:
    names = sorted(johns)
    stranger, students = names[stranger], names[:stranger] + names[stranger + 1 :]
    X, y = [], []
    for name in students:
        for a in johns[name][:5]:
            if a.embedding is not None and a.quality is not None and a.quality.ok:
                X.append(a.embedding)
                y.append(name)
    model = train_model(np.stack(X), y, kind="centroid", holdout=0)
    assert model.threshold >= model.calibration.floor
    for name in students:
        decider = model.decider()
        for a in johns[name][5:]:
            if decider.observe(vote_analysis(model, a)).final:
                break
        d = decider.finish()
        assert d.status == ACCEPTED and d.label == name, (name, d)
    # The stranger's 5-frame attempts, every window of his 11 photos: never signed in as anyone.
    frames = [vote_analysis(model, a) for a in johns[stranger]]
    assert not any(v.label for v in frames)
    for start in range(len(frames) - 4):
        assert decide_attempt(frames[start : start + 5], model.decider()).status == REJECTED


def test_the_held_out_check_samples_its_probes_in_a_large_gallery() -> None:
    from tests.pipeline.test_calibrate import clusters

    X, y = clusters(300, 5)
    every = train_model(X, y, holdout=0.4)
    sampled = train_model(X, y, holdout=0.4, max_holdout_probes=100)
    assert every.metrics["holdout"]["frames"] == 600  # 2 of each student's 5 photos
    assert sampled.metrics["holdout"]["frames"] == 100
    assert sampled.metrics["holdout"]["train_embeddings"] == every.metrics["holdout"]["train_embeddings"]
    assert sampled.metrics["holdout"]["rank1_accuracy"] == pytest.approx(every.metrics["holdout"]["rank1_accuracy"], abs=0.05)
    assert sampled.threshold == every.threshold  # the model itself is trained on everything either way


# --- a fused face track ----------------------------------------------------------------------


def _track(embeddings: np.ndarray, *, box: tuple[float, float, float, float] = (10, 10, 110, 130), moves: list[int] | None = None) -> list[types.FrameAnalysis]:
    """Good frames of one face at ``box`` (shifted right by ``moves[i]`` px in frame i)."""
    frames = []
    for i, embedding in enumerate(embeddings):
        dx = (moves or [0] * len(embeddings))[i]
        face = types.Face(
            box=(box[0] + dx, box[1], box[2] + dx, box[3]),
            probability=0.99,
            landmarks=((40 + dx, 50), (80 + dx, 50), (60 + dx, 75), (45 + dx, 100), (75 + dx, 100)),
        )
        good = types.QualityReport(face_px=100, brightness=120, sharpness=200, pose=types.Pose(0, 0, 0))
        frames.append(types.FrameAnalysis(types.Detection((face,), (640, 480)), face, good, embedding=embedding))
    return frames


def _noisy_stream(student: int, noise: float, count: int, seed: int) -> np.ndarray:
    """A webcam stream of one photo of ``student``: the photo's embedding plus fresh noise per frame."""
    clean = photos(ENROLLED[student : student + 1], 1, seed=90 + seed)[0]
    rng = np.random.default_rng(5_000 + seed)  # not 1 or 2: those seeds made the students' centres
    return normalise(clean[None, :] + noise * normalise(rng.standard_normal((count, 512))))


def _decide(model: TrainedModel, frames: list[types.FrameAnalysis], fusion: str):
    fused = with_config(model, fusion=fusion, max_frames=len(frames))
    return decide_attempt(vote_analyses(fused, frames), fused.decider(), frames)


def test_a_noisy_stream_of_the_student_is_signed_in_by_its_fused_track_not_by_frame_votes(model: TrainedModel) -> None:
    # Noise pulls each frame below the threshold but one; their mean is the photo again.
    stream = _noisy_stream(0, noise=0.9, count=8, seed=2)
    frames = _track(stream)
    assert [v.label for v in vote_analyses(model, frames)].count(LABELS[0]) == 1
    assert _decide(model, frames, "votes").status == REJECTED  # three votes needed
    decision = _decide(model, frames, "track")
    assert decision.status == ACCEPTED and decision.label == LABELS[0]


def test_a_fused_track_no_frame_supports_on_its_own_signs_nobody_in(model: TrainedModel) -> None:
    # Means look more like "someone" than their parts (different photos of a stranger, in the bench's
    # stress test, got in that way): one frame of the track must pass on its own.
    stream = _noisy_stream(0, noise=1.3, count=8, seed=1)
    frames = _track(stream)
    assert not any(v.label for v in vote_analyses(model, frames))
    assert _decide(model, frames, "track").status == REJECTED
    unguarded = with_config(model, fusion="track", fusion_votes=0, max_frames=len(frames))
    assert decide_attempt(vote_analyses(unguarded, frames), unguarded.decider(), frames).status == ACCEPTED


def test_a_strangers_fused_track_is_never_signed_in(model: TrainedModel) -> None:
    for i in range(len(STRANGERS)):
        rng = np.random.default_rng(6_000 + i)
        stream = normalise(STRANGERS[i][None, :] + 0.8 * normalise(rng.standard_normal((10, 512))))
        assert _decide(model, _track(stream), "track").status == REJECTED


def test_a_jump_starts_a_new_track_and_drops_the_old_evidence(model: TrainedModel) -> None:
    stream = _noisy_stream(0, noise=0.9, count=8, seed=2)  # signs in at the sixth frame (see above)
    steady = _decide(model, _track(stream, moves=[0, 2, 4, 6, 8, 10, 12, 14]), "track")
    assert steady.status == ACCEPTED and steady.frames == 6
    # The same frames, but before the sixth the face is 300 px further right (another face, or a picture
    # swapped in): the five frames before the jump no longer count, so three more are needed after it.
    jumped = _decide(model, _track(stream, moves=[0, 2, 4, 6, 8, 300, 302, 304]), "track")
    assert jumped.status == REJECTED or jumped.frames == 8


def test_the_fused_track_needs_min_frames_naming_the_student_and_no_conflict(model: TrainedModel) -> None:
    mine = _noisy_stream(0, noise=0.4, count=2, seed=3)
    two = _track(mine)
    fused = with_config(model, fusion="track")
    assert decide_attempt(vote_analyses(fused, two), fused.decider(), two).status == REJECTED  # min_frames is 3
    other = photos(ENROLLED[1:2], 1, seed=91)
    mixed = _track(np.concatenate([mine, other, _noisy_stream(0, noise=0.4, count=2, seed=4)]))
    decision = _decide(model, mixed, "track")
    assert decision.status == REJECTED and decision.reason == "conflict"  # a frame confidently someone else


def test_verify_mode_fuses_against_the_claimed_student_only(model: TrainedModel) -> None:
    stream = _track(_noisy_stream(0, noise=1.0, count=6, seed=5))
    threshold = model.calibration.verification()[0]
    config = replace(model.config, fusion="track", max_frames=6)
    votes = [vote_claim(model, a, LABELS[0], threshold) for a in stream]
    d = decide_attempt(votes, AttemptDecider(config, model=model, claim=(LABELS[0], threshold)), stream)
    assert d.status == ACCEPTED and d.label == LABELS[0]
    votes = [vote_claim(model, a, LABELS[1], threshold) for a in stream]
    d = decide_attempt(votes, AttemptDecider(config, model=model, claim=(LABELS[1], threshold)), stream)
    assert d.status == REJECTED  # someone else's stream claiming student 1


def test_a_model_read_from_parts_has_room_for_its_next_version_and_never_stores_it(model: TrainedModel) -> None:
    import copy

    head, parts = model.to_parts(part_bytes=4096)
    loaded = TrainedModel.from_parts(head, lambda i: bytes(parts[i]))
    gallery = loaded.gallery
    assert len(gallery._X) > gallery.n_rows  # room past the rows, allocated but not written
    new = gallery.copy()  # the next version, as a serving process applies it
    new.add("late", photos(STRANGERS[:1], 5, seed=9))
    new.remove(LABELS[0])
    assert np.shares_memory(new._X, gallery._X), "one more student copied the rows"
    classifier = copy.copy(loaded.classifier)
    classifier.gallery = new
    version = replace(loaded, classifier=classifier, gallery=new)
    head, parts = version.to_parts(part_bytes=4096)
    stored = sum(p.nbytes for p in parts)
    assert stored < new.n_rows * 512 * 4 + 64 * 1024  # the live rows: no room, no removed rows
    again = TrainedModel.from_parts(head, lambda i: bytes(parts[i]))
    assert again.labels == version.labels and again.gallery.n_rows == new.n_rows == 30 * 5
    probes = np.vstack([photos(ENROLLED[:3], 2, seed=10), photos(STRANGERS[:1], 2, seed=9), STRANGERS[1:4]])
    assert [(v.label, v.reason) for v in vote_frames(again, probes)] == [(v.label, v.reason) for v in vote_frames(version, probes)]
    assert [v.label for v in vote_frames(again, probes)][:2] == [None, None]  # the removed student's frames
