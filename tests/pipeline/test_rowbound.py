"""The rows' sign-code bounds (``facelogin.pipeline.rowbound``): never below a row's true score."""

from __future__ import annotations

import numpy as np
import pytest

from facelogin.pipeline import rowbound
from facelogin.pipeline.classify import Gallery, normalise


def gallery_rows(students: int, photos: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((students, 512)))
    X = normalise(np.repeat(centres, photos, axis=0) + noise * normalise(rng.standard_normal((students * photos, 512))))
    return X, np.repeat(np.arange(students), photos).astype(np.int32)


def centroids_of(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    sums = np.zeros((labels.max() + 1, X.shape[1]))
    np.add.at(sums, labels, X)
    return normalise(sums)


@pytest.mark.parametrize(("photos", "noise"), [(5, 0.75), (1, 0.5), (8, 1.5), (3, 0.05)])
def test_no_row_scores_above_its_bound(photos: int, noise: float) -> None:
    X, labels = gallery_rows(300, photos, noise, seed=photos)
    C = centroids_of(X, labels)
    codes, ones, h, g, err = rowbound.encode_rows(X, C[labels])
    rng = np.random.default_rng(1)
    # strangers, probes near enrolled photos, the photos themselves and their opposites
    probes = normalise(np.vstack([
        rng.standard_normal((20, 512)),
        X[::37] + 0.3 * normalise(rng.standard_normal((len(X[::37]), 512))),
        X[:10],
        -X[10:15],
    ]))
    for probe in probes:
        scores = X @ probe
        cscores = C @ probe
        # centroid scores known only to within 0.01 (as from int8 centroids), at their worst
        cerr = np.full(len(C), 0.01, dtype=np.float32)
        for bar in (-1.0, 0.0, 0.3, 0.55, float(scores.max()) - 1e-3, float(scores.max())):
            rows, _ = rowbound.candidate_rows(len(X), codes, ones, h, g, err, labels, cscores, probe, bar - 1e-4)
            assert set(np.flatnonzero(scores >= bar)) <= set(rows.tolist())
            rows, _ = rowbound.candidate_rows(
                len(X), codes, ones, h, g, err, labels, cscores - cerr, probe, bar - 1e-4, centroid_errors=cerr
            )
            assert set(np.flatnonzero(scores >= bar)) <= set(rows.tolist())


def test_a_strangers_rows_are_ruled_out_by_their_bounds() -> None:
    # The benchmark's shape (photos at cosine ~0.8 to their centre): every centroid bound of a
    # stranger is near the 0.55 floor, the rows' bounds are far below it.
    X, labels = gallery_rows(2_000, 5, 0.75, seed=3)
    C = centroids_of(X, labels)
    codes, ones, h, g, err = rowbound.encode_rows(X, C[labels])
    probes = normalise(np.random.default_rng(4).standard_normal((20, 512)))
    for probe in probes:
        rows, _ = rowbound.candidate_rows(len(X), codes, ones, h, g, err, labels, C @ probe, probe, 0.55)
        assert len(rows) < len(X) // 1000


def test_the_low_bar_lists_rows_only_within_its_budget() -> None:
    X, labels = gallery_rows(200, 5, 0.75, seed=5)
    C = centroids_of(X, labels)
    codes, ones, h, g, err = rowbound.encode_rows(X, C[labels])
    probe = X[7]
    args = (len(X), codes, ones, h, g, err, labels, C @ probe, probe, 0.9)
    rows, low = rowbound.candidate_rows(*args, low_bar=-1.0, low_budget=len(X))
    assert sorted(low.tolist()) == list(range(len(X))) and 7 in rows
    assert rowbound.candidate_rows(*args, low_bar=-1.0, low_budget=len(X) - 1)[1] is None


def test_a_gallery_keeps_its_row_codes_exact_through_changes_copies_and_pickling() -> None:
    import pickle

    X, labels = gallery_rows(120, 5, 0.75, seed=6)
    y = [f"s{i}" for i in labels]
    g = Gallery.from_arrays(X[:300], y[:300])
    g.add_many(X[300:500], y[300:500])
    g.add(y[0], X[550:552])  # an existing student gains photos: their centroid moves
    g.remove(y[5])
    copy = g.copy()
    copy.add("late", X[590:600])
    for gallery in (g, copy, pickle.loads(pickle.dumps(copy))):
        live = np.flatnonzero(gallery._row_label[: gallery._n] >= 0)  # removed rows stay in place, marked
        assert len(live) == gallery.n_rows
        fresh = rowbound.encode_rows(gallery._X[live], gallery.centroids()[gallery._row_label[live]])
        codes = gallery._codes.transpose(1, 0, 2).reshape(rowbound.WORDS, -1)[:, live]  # blocks back to rows
        kept = (codes, gallery._ones[live], gallery._h[live], gallery._g[live], gallery._err[live])
        for mine, expected in zip(kept, fresh, strict=True):
            assert np.array_equal(mine, expected)
        removed = np.flatnonzero(gallery._row_label[: gallery._n] < 0)
        assert np.all(gallery._err[removed] == -np.inf)  # no probe's bound reaches a removed row


def test_the_compiled_centroid_bounds_equal_the_gallerys_and_keep_the_highest() -> None:
    X, labels = gallery_rows(400, 5, 0.75, seed=7)
    g = Gallery.from_arrays(X, [f"s{i}" for i in labels])
    probes = normalise(np.vstack([np.random.default_rng(8).standard_normal((5, 512)), X[:5]]))
    expected = g._upper_bounds(g.centroid_scores(probes))
    for cs, want in zip(g.centroid_scores(probes), expected, strict=True):
        ub, top = rowbound.centroid_bounds(cs, None, g._cos_rho[: g.n_labels], 32)
        np.testing.assert_allclose(ub, want, atol=1e-12)
        assert np.sort(ub[top])[0] >= np.sort(ub)[-32]
        widened, _ = rowbound.centroid_bounds(cs - 0.01, np.full(len(cs), 0.01, np.float32), g._cos_rho[: g.n_labels], 32)
        assert np.all(widened >= ub - 1e-6)
