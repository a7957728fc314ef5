"""Classifiers and the enrolled gallery, on synthetic embeddings (no models, no database)."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from facelogin.pipeline.classify import (
    CLASSIFIER_KINDS,
    CentroidClassifier,
    Gallery,
    IncrementalClassifier,
    KNNClassifier,
    make_classifier,
    normalise,
)


def clusters(
    students: int, photos: int, *, noise: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Unit embeddings around one random centre per student: same-student cosine ~1/(1+noise^2)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((students, 512)))
    X = np.repeat(centres, photos, axis=0) + noise * normalise(rng.standard_normal((students * photos, 512)))
    y = [f"stu{i:05d}" for i in np.repeat(np.arange(students), photos)]
    return normalise(X), y, centres


def brute_force(
    gallery_X: np.ndarray, gallery_y: list[str], probes: np.ndarray, top_k: int = 1
) -> dict[str, np.ndarray]:
    out = {}
    for label in sorted(set(gallery_y)):
        rows = gallery_X[[i for i, v in enumerate(gallery_y) if v == label]]
        s = np.sort(probes @ rows.T, axis=1)[:, ::-1]
        out[label] = s[:, : min(top_k, s.shape[1])].mean(axis=1)
    return out


@pytest.mark.parametrize("kind", sorted(CLASSIFIER_KINDS))
def test_every_kind_recognises_enrolled_students(kind: str) -> None:
    X, y, centres = clusters(12, 5)
    params = {"hidden_layer_sizes": (64,)} if kind == "mlp" else {}
    clf = make_classifier(kind, **params).fit(X, y)
    assert clf.kind == kind
    rng = np.random.default_rng(7)
    probes = normalise(np.repeat(centres, 2, axis=0) + 0.6 * normalise(rng.standard_normal((24, 512))))
    truth = [f"stu{i:05d}" for i in np.repeat(np.arange(12), 2)]
    labels, probs = clf.predict(probes)
    assert labels == truth
    assert isinstance(labels[0], str)
    assert probs.shape == (24,) and np.all((probs > 0) & (probs <= 1))
    proba = clf.predict_proba(probes)
    assert proba.shape == (24, 12)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    assert sorted(clf.classes) == sorted(set(y))


def test_it_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown classifier"):
        make_classifier("random-forest")


@pytest.mark.parametrize("top_k", [1, 3])
def test_gallery_scores_equal_brute_force(top_k: int) -> None:
    X, y, _ = clusters(20, 4)
    # Uneven photo counts: a student with 1 photo and one with 7.
    X = np.vstack([X, clusters(1, 7, seed=3)[0], clusters(1, 1, seed=4)[0]])
    y = y + ["many"] * 7 + ["one"]
    g = Gallery.from_arrays(X, y, top_k=top_k)
    probes = clusters(5, 1, seed=9)[0]
    S = g.similarities(probes)
    expected = brute_force(X, y, probes, top_k)
    for j, label in enumerate(g.labels):
        np.testing.assert_allclose(S[:, j], expected[label], atol=1e-5)


def test_gallery_search_returns_the_two_best_students_with_exact_scores() -> None:
    X, y, _ = clusters(30, 5)
    g = Gallery.from_arrays(X, y)
    probes = X[::5] + 0.0
    names, scores = g.search(probes, k=2)
    S = g.similarities(probes)
    for i in range(len(probes)):
        order = np.argsort(-S[i])
        assert names[i] == [g.labels[order[0]], g.labels[order[1]]]
        np.testing.assert_allclose(scores[i], S[i, order[:2]], atol=1e-6)
    assert names[0][0] == y[0]


def test_the_shortlist_search_agrees_with_the_exact_one() -> None:
    X, y, centres = clusters(400, 5)
    exact = Gallery.from_arrays(X, y)
    fast = Gallery.from_arrays(X, y, exact_rows=100, shortlist=20)
    rng = np.random.default_rng(2)
    probes = normalise(centres[:50] + 0.6 * normalise(rng.standard_normal((50, 512))))
    n1, s1 = exact.search(probes, k=2)
    n2, s2 = fast.search(probes, k=2)
    assert n1 == n2
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_gallery_adds_and_removes_one_student_without_touching_the_others() -> None:
    X, y, _ = clusters(10, 5)
    g = Gallery.from_arrays(X[:45], y[:45])  # students 0..8
    assert g.n_labels == 9 and g.n_rows == 45
    g.add(y[45], X[45:])  # student 9 enrols
    assert g.n_labels == 10 and g.n_rows == 50
    assert g.remove("stu00003") == 5
    assert g.remove("nobody") == 0
    assert "stu00003" not in g and g.n_rows == 45
    keep = [i for i, v in enumerate(y) if v != "stu00003"]
    fresh = Gallery.from_arrays(X[keep], [y[i] for i in keep])
    probes = clusters(4, 1, seed=5)[0]
    mine = dict(zip(g.labels, g.similarities(probes).T))
    theirs = dict(zip(fresh.labels, fresh.similarities(probes).T))
    assert mine.keys() == theirs.keys()
    for label in mine:
        np.testing.assert_allclose(mine[label], theirs[label], atol=1e-6)
    cents = dict(zip(g.labels, g.centroids()))
    for label, c in zip(fresh.labels, fresh.centroids()):
        np.testing.assert_allclose(cents[label], c, atol=1e-5)
    np.testing.assert_allclose(np.sort(g.embeddings_of("stu00009"), axis=0), np.sort(X[45:], axis=0), atol=1e-6)


def test_an_existing_student_can_enrol_more_photos() -> None:
    X, y, _ = clusters(3, 4)
    g = Gallery.from_arrays(X[:2], y[:2])
    g.add(y[0], X[2:4])
    assert g.n_labels == 1 and g.n_rows == 4
    np.testing.assert_allclose(g.centroids()[0], normalise(X[:4].mean(axis=0))[0], atol=1e-5)


@pytest.mark.parametrize("cls", [CentroidClassifier, KNNClassifier])
def test_distance_classifiers_enrol_and_drop_students_incrementally(cls: type) -> None:
    X, y, centres = clusters(8, 5)
    clf = cls().fit(X[:35], y[:35])
    assert isinstance(clf, IncrementalClassifier)
    probe = normalise(centres[7] + 0.5 * normalise(np.random.default_rng(1).standard_normal(512)))
    assert clf.predict(probe)[0] != ["stu00007"]
    clf.add("stu00007", X[35:])
    assert clf.predict(probe)[0] == ["stu00007"]
    clf.remove("stu00007")
    assert "stu00007" not in clf.classes
    assert clf.predict(probe)[0] != ["stu00007"]


def test_gallery_survives_pickling_with_only_its_used_rows() -> None:
    X, y, _ = clusters(6, 3)
    g = Gallery.from_arrays(X, y, top_k=2)
    g2 = pickle.loads(pickle.dumps(g))
    assert g2.labels == g.labels and g2.top_k == 2
    np.testing.assert_allclose(g2.similarities(X[:3]), g.similarities(X[:3]))
    g2.add("late", X[:2])  # still growable after unpickling
    assert g2.n_rows == len(X) + 2


@pytest.mark.slow
def test_search_over_30000_students_takes_under_10_ms() -> None:
    from threadpoolctl import threadpool_limits

    students = 30_000
    rng = np.random.default_rng(0)
    X = normalise(rng.standard_normal((students * 5, 512)))
    y = np.repeat(np.arange(students), 5).astype(str).tolist()
    g = Gallery.from_arrays(X, y)
    g.search(X[:1])  # builds the slot index once
    best = np.inf
    # One BLAS thread and the CPU time of this thread: other processes on a 2-core box inflate wall
    # clock, not the work done. The login path runs one probe at a time like this.
    with threadpool_limits(limits=1):
        for i in range(15):
            t = time.thread_time()
            names, _ = g.search(X[i * 7 : i * 7 + 1], k=2)
            best = min(best, time.thread_time() - t)
            assert names[0][0] == y[i * 7]
    assert best < 0.010, f"{best * 1000:.1f} ms"
    t = time.perf_counter()
    g.add("newcomer", X[:5])
    g.remove(y[0])
    g.search(X[5:6])
    assert time.perf_counter() - t < 1.0  # one enrolment: no refit, one re-index
