"""Per-deployment classifiers over FaceNet embeddings, and the enrolled ``Gallery``.

Inputs everywhere: ``float32`` arrays of shape (n, 512), rows L2-normalised, and student ids as ``str``.

Two families live here:

* closed-set classifiers from the thesis and its relatives (``svm``, ``mlp``, ``logreg``): scikit-learn
  estimators that must be refitted whenever one student enrols, and whose probabilities shrink as ~1/N
  with N students (docs/../shared/notes/performance.md), so a fixed probability threshold means nothing
  at scale;
* embedding-distance classifiers (``centroid``, ``knn``) that only add or drop rows when a student
  enrols or leaves, and that stay cheap at 30,000 students.

Whatever the classifier, the open-set gate in ``decide`` uses the ``Gallery``: the cosine similarity of
a probe to each student's own enrolled embeddings. The gallery is kept incrementally (``add`` /
``remove`` one student without touching the others).

Nothing here loads a model at import time; scikit-learn is imported by the classes that need it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import rowbound

EMBEDDING_DIM = 512
# Probes scored per block in batch calls (a held-out evaluation sends 30,000 at once): bounds the
# (probes x students) temporaries to ~100 MB at 30,000 students instead of tens of GB.
_PROBE_CHUNK = 256
_ROW_CHUNK = 16_384
# Float error allowance when comparing a bound with a score (float32 dot products of unit vectors
# are good to ~1e-6): a larger slack only examines a few more students.
_BOUND_SLACK = 1e-4
# Below the bar, the rows the search scores to make the best result exact (~0.3 ms of exact scoring).
_LOW_BUDGET_ROWS = 2_048
# derived arrays of ``rowbound``: per row, and per student (the int8 centroids)
_DERIVED_KEYS = ("_codes", "_ones", "_h", "_g", "_err", "_x4", "_x4_scale", "_x4_err", "_c8", "_c8_scale", "_c8_err")
# The gallery's arrays per row and per student, which versions share (``Gallery.copy``).
_ROW_INDEX_KEYS = ("_row_label", "_codes", "_ones", "_h", "_g", "_err")
# ... the embeddings and their int4 copies are never changed in place (a removed row is only relabelled)
_ROW_KEYS = ("_X", "_x4", "_x4_scale", "_x4_err", *_ROW_INDEX_KEYS)
_BLOCK_KEYS = ("_codes", "_x4")  # in blocks of rowbound.TILE rows
_LABEL_KEYS = ("_counts", "_centroids", "_cos_rho", "_c8", "_c8_scale", "_c8_err")
# Gallery's defaults: students left by the centroid bounds above which the rows' own bounds are
# checked first, and students above which centroids are scored from their int8 copies first.
ROW_BOUND_STUDENTS = 64
COARSE_STUDENTS = 20_000
# Rows that are four equal copies of a quarter of their columns (``embed.spread``: SFace's 128 numbers
# over the gallery's 512 columns) are stored as that quarter, doubled: dot products are the same numbers,
# from a quarter of the bytes. 4 because its square root, the scale, is exact in floating point.
_FOLD = 4
_FOLD_SCALE = np.float32(2.0)
# Rows this short (SFace's 128 numbers, folded) keep int4 copies for the stranger's pass (``_x4``, 72
# bytes a row): their bound is ~0.12 wide where the 512-bit sign codes' is ~0.3 in 128 dimensions, where
# a stranger's cosines spread twice as wide as in 512. Longer rows (FaceNet's 512) keep the sign codes
# (80 bytes a row, where int4 copies would take 264).
_INT4_ROWS_MAX_WIDTH = 128
# Above this many probes at once the float32 product with every centroid is compute-bound (BLAS
# runs near peak on a block), so the int8 pass stops paying; a login votes 1-8 frames at a time.
_COARSE_MAX_PROBES = 16

__all__ = [
    "CLASSIFIER_KINDS",
    "CentroidClassifier",
    "Classifier",
    "Gallery",
    "IncrementalClassifier",
    "KNNClassifier",
    "LogRegClassifier",
    "MLPClassifier",
    "SVMClassifier",
    "make_classifier",
    "label_slots",
    "normalise",
    "reduce_per_label",
]


def normalise(X: np.ndarray) -> np.ndarray:
    """Rows as float32 unit vectors (a no-op on FaceNet output; protects against callers that are not)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X[None, :]
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (X / norms).astype(np.float32, copy=False)


def _softmax(scores: np.ndarray, scale: float) -> np.ndarray:
    z = scores.astype(np.float64) * scale
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _as_labels(y: Iterable[object]) -> list[str]:
    return [str(v) for v in y]


def label_slots(row_label: np.ndarray, n_labels: int) -> np.ndarray:
    """(n_labels, max rows per label) row indices grouped by label; padding is ``len(row_label)``.
    Rows labelled -1 (removed, ``Gallery.remove``) are in no slot."""
    n = len(row_label)
    live = None
    if n and row_label.min() < 0:  # removed rows (label -1) of a gallery that shares its rows
        live = np.flatnonzero(row_label >= 0)
        row_label = row_label[live]
    m = len(row_label)
    counts = np.bincount(row_label, minlength=n_labels)[:n_labels] if m else np.zeros(n_labels, np.int64)
    width = int(counts.max()) if n_labels and m else 1
    slots = np.full((n_labels, max(width, 1)), n, dtype=np.int64)
    if m:
        order = np.argsort(row_label, kind="stable")
        sorted_labels = row_label[order]
        starts = np.zeros(n_labels, dtype=np.int64)
        starts[1:] = np.cumsum(counts)[:-1]
        within = np.arange(m) - starts[sorted_labels]
        slots[sorted_labels, within] = order if live is None else live[order]
    return slots


def reduce_per_label(S: np.ndarray, slots: np.ndarray, top_k: int = 1) -> np.ndarray:
    """(P, rows) row similarities -> (P, n_labels) per-label max (top_k=1) or mean of the top_k rows.

    Padding in ``slots`` (index == rows) and -inf entries in ``S`` never count; a label with no
    usable row scores -inf.
    """
    P = S.shape[0]
    ext = np.empty((P, S.shape[1] + 1), dtype=np.float32)
    ext[:, :-1] = S
    ext[:, -1] = -np.inf
    G = ext[:, slots]  # (P, L, width)
    if top_k == 1 or G.shape[2] == 1:
        return G.max(axis=2)
    k = min(top_k, G.shape[2])
    top = -np.partition(-G, k - 1, axis=2)[:, :, :k]
    # Labels with fewer than k rows average what they have.
    finite = np.isfinite(top)
    total = np.where(finite, top, 0).sum(axis=2)
    count = finite.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32)


# --- the gallery ---------------------------------------------------------------------------------


class _Claim:
    """How far the versions sharing a gallery's buffers (``Gallery.copy``) have used them, in rows and
    students: a version appends in place only where none of them has been, so it never writes what
    another reads. A version changing the buffers and one searching them may be different threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows = 0
        self.labels = 0

    def reach(self, rows: int, labels: int) -> None:
        with self._lock:
            self.rows, self.labels = max(self.rows, rows), max(self.labels, labels)

    def extend_rows(self, at: int, to: int) -> bool:
        return self._extend("rows", at, to)

    def extend_labels(self, at: int, to: int) -> bool:
        return self._extend("labels", at, to)

    def _extend(self, name: str, at: int, to: int) -> bool:
        """Move the ``name`` mark from ``at`` to ``to``, only if no other version moved it since ``at``."""
        with self._lock:
            if getattr(self, name) != at:
                return False
            setattr(self, name, to)
            return True


def _is_spread(X: np.ndarray, copies: int) -> bool:
    """Whether every row of ``X`` is ``copies`` equal runs of columns (``embed.spread``'s layout)."""
    n, dim = X.shape
    if dim % copies or not n:
        return False
    runs = X.reshape(n, copies, dim // copies)
    return bool((runs == runs[:, :1]).all())


def _with_room(a: np.ndarray) -> np.ndarray:
    """``a`` (C-contiguous rows) viewed with the whole allocation it starts, when that holds more
    rows: ``TrainedModel.from_parts`` allocates each array with room past it. Otherwise ``a``."""
    owner: Any = a
    while True:
        base = owner.obj if isinstance(owner, memoryview) else getattr(owner, "base", None)
        if base is None:
            break
        owner = base
    if not (
        isinstance(owner, np.ndarray) and owner.dtype == np.uint8 and owner.ndim == 1 and owner.flags.writeable
        and a.flags.c_contiguous and a.ndim >= 1 and owner.ctypes.data == a.ctypes.data
    ):
        return a
    row = a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
    rows = owner.nbytes // row if row else 0
    if rows <= len(a):
        return a
    return owner[: rows * row].view(a.dtype).reshape(rows, *a.shape[1:])


class Gallery:
    """Enrolled embeddings with their student ids; per-student similarity by numpy matrix products.

    A student's score for a probe is the maximum cosine similarity over that student's rows
    (``top_k=1``), or the mean of the ``top_k`` best rows, which is steadier when a student enrolled
    an odd photo but punishes students with few photos.

    Storage is a row buffer with room past its end, in arbitrary order, plus a (students x slots)
    index built lazily after a change, so ``add``/``remove`` cost O(rows of that student) plus one
    O(rows) re-index, never a refit. Removal marks the rows removed and leaves them in place; a new
    version (``copy``) shares the buffers with the one it started from, so a serving process applying
    one more student holds the rows once, not twice (see ``copy``).

    Cost (one core, float32, measured with ``bench.gallery``'s synthetic galleries): the exact
    per-student scores for ONE probe are one (rows x 512) mat-vec, memory-bound: ~25 ms for 30,000
    students x 5 rows (307 MB), ~10 ms at 10,000. Above ``exact_rows`` rows ``search`` therefore
    ranks students by an upper bound computed from their centroids (30,000 x 512: ~5 ms, shared with
    the centroid classifier) and their radii, scores a ``shortlist`` exactly and then only the
    students whose bound could still beat the best found: the top result stays exact (see
    ``search``). For a genuine probe that is ~0.3 ms at 1,000 students, 2 ms at 10,000, 5-6 ms at
    30,000. Exact search and the shortlist cost the same at about 2,500 rows on this machine; the
    switch is at 4,000.

    A probe that matches nobody (a stranger) is near every student's centroid bound, so those rule
    out almost no one. When many students are left, each row's own bound (``rowbound``: 80 bytes
    a row, a sign code of the row around its centroid) is checked instead, in one compiled scan:
    with the login's ``floor`` it rules out nearly every row of a stranger, so the search scores a
    shortlist, not the gallery (``rowbound`` has the maths; the bounds are upper bounds, so results
    stay exact where ``search`` says they are).

    A gallery whose first rows are spread copies (``embed.spread``: a 128-number model over 512
    columns) keeps every row and centroid as the 128 numbers (``fold``): a quarter of the memory and
    of the reads of every pass, with the same dot products (a spread pair's is the short pair's).
    Rows it is given must then be spread the same way (a row of another model raises ValueError);
    probes need not be (``_folded``); ``embeddings`` and ``centroids`` give the 512 columns back.
    Such short rows also keep an int4 copy (``_x4``, 72 bytes a row): in 128 dimensions the sign
    codes rule out too few of a stranger's rows, the int4 copies' bound (~0.12 wide) nearly all.
    """

    def __init__(
        self,
        dim: int = EMBEDDING_DIM,
        *,
        top_k: int = 1,
        exact_rows: int = 4_000,
        shortlist: int = 32,
        row_bound_students: int = ROW_BOUND_STUDENTS,
        coarse_students: int = COARSE_STUDENTS,
        fold: bool = True,
    ) -> None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.dim = dim
        # 1, or _FOLD once the first rows turned out spread (``add_many``); ``fold=False`` never folds
        self._fold = 1
        self._may_fold = fold
        self.top_k = top_k
        self.exact_rows = exact_rows
        self.shortlist = shortlist
        self.row_bound_students = row_bound_students
        self.coarse_students = coarse_students
        self._X = np.zeros((0, dim), dtype=np.float32)
        # Per row, the student's index; -1 for a removed row that stays in place (see ``remove``).
        self._row_label = np.zeros(0, dtype=np.int32)
        self._n = 0
        self._dead_rows = 0
        self._labels: list[str] = []
        self._index: dict[str, int] = {}
        self._counts = np.zeros(0, dtype=np.int64)
        # Unit mean of each student's rows, recomputed from the rows when the student changes (no
        # running sums: they were 205 MB of a 100,000-student serving process).
        self._centroids = np.zeros((0, dim), dtype=np.float32)
        # Per student, the cosine between the centroid and the student's farthest row: the angular
        # radius that bounds what any probe can score against that student (see ``search``).
        self._cos_rho = np.zeros(0, dtype=np.float32)
        # Per student, the centroid as int8 levels times a scale, and the score error that allows
        # (``rowbound.quantise_int8``): above ``coarse_students`` students a probe's pass over
        # every centroid reads these, a quarter of the bytes, and scores exactly only the few
        # students whose bound needs it.
        self._init_int8_centroids(0)
        self._coarse_memo: tuple[int, bytes, tuple[np.ndarray, np.ndarray]] | None = None
        # Per row, parallel to ``_X``: the sign code and factors of ``rowbound``'s bound (80 bytes a
        # row), kept exact under add/remove like the radii; never pickled, rebuilt on load.
        self._init_row_bounds(0)
        # Per row of a short-row gallery (``_int4_rows``), the row as int4 levels times a scale and the
        # error that allows (``rowbound.quantise_int4``), in blocks of rows as the codes: the rows' own
        # bound for the stranger's pass.
        self._init_int4_rows(0)
        # Arrays this gallery shares with other versions (``copy``), and the record of how far any of
        # them has used the shared buffers: see ``copy``.
        self._shared: set[str] = set()
        self._claim: _Claim | None = None
        self._slots: np.ndarray | None = None  # (students, max rows) row indices, padded with n
        self._version = 0  # bumped by every change; keys the centroid-score memo
        # (version, probe bytes, scores): the centroid classifier and the shortlist search score the
        # same probe against the same centroids; at 30,000 students that product is ~5 ms per probe.
        # A tuple is swapped in whole, so concurrent readers see an old or a new memo, never half.
        self._memo: tuple[int, bytes, np.ndarray] | None = None

    # -- construction / mutation --
    @classmethod
    def from_arrays(cls, X: np.ndarray, y: Sequence[object], **kwargs: Any) -> Gallery:
        gallery = cls(np.asarray(X).shape[1], **kwargs)
        gallery.add_many(X, y)
        return gallery

    def add_many(self, X: np.ndarray, y: Sequence[object]) -> None:
        X = normalise(X)
        labels = _as_labels(y)
        if len(labels) != len(X):
            raise ValueError("X and y differ in length")
        if X.shape[1] != self.dim:
            raise ValueError(f"embeddings must have {self.dim} columns, got {X.shape[1]}")
        if not len(X):
            return
        # one check of the rows' layout: it decides whether an empty gallery folds, or a folded one takes them
        if self._may_fold and self._fold == 1 and self._n == 0 and not self._labels and _is_spread(X, _FOLD):
            self._fold_storage()
        elif self._fold > 1 and not _is_spread(X, self._fold):
            raise ValueError(
                f"this gallery holds {self._width}-number embeddings spread over {self.dim} columns; "
                "these are not (another face model's?)"
            )
        X = self._folded(X)
        # Vectorised bulk path (150,000 rows in ~2 s, not a Python loop per student); same result as add().
        old_L, old_n = len(self._labels), self._n
        new_labels = list(dict.fromkeys(label for label in labels if label not in self._index))
        self._room_for_labels(len(new_labels))
        if new_labels:
            self._own_names()
            self._labels += new_labels
            self._index.update((label, old_L + i) for i, label in enumerate(new_labels))
        L = len(self._labels)
        li = np.fromiter((self._index[label] for label in labels), dtype=np.int32, count=len(labels))
        if li.min() < old_L:  # rows for students already here: their centroids and rows' codes change
            self._own(_LABEL_KEYS, old_L)
            self._own(_ROW_INDEX_KEYS, old_n)
        k = len(X)
        self._room_for_rows(k)
        self._X[self._n : self._n + k] = X
        if self._int4_rows:
            self._write_int4_rows(self._n, X)
        self._row_label[self._n : self._n + k] = li
        self._n += k
        self._counts[:L] += np.bincount(li, minlength=L)[:L]
        touched = np.unique(li)
        self._refresh(touched)
        self._slots = None
        self._version += 1
        if self._n > self.exact_rows:
            rowbound.warm_up()

    def _fold_storage(self) -> None:
        """Store rows and centroids as the quarter they repeat (an empty gallery: nothing to move)."""
        self._fold = _FOLD
        self._X = np.zeros((0, self._width), dtype=np.float32)
        self._centroids = np.zeros((len(self._counts), self._width), dtype=np.float32)
        self._init_int8_centroids(len(self._counts))
        self._init_int4_rows(0)
        self._shared.difference_update(("_X", "_x4", "_x4_scale", "_x4_err", "_centroids", "_c8", "_c8_scale", "_c8_err"))

    @property
    def _width(self) -> int:
        """Columns stored per row and centroid."""
        return self.dim // self._fold

    @property
    def _int4_rows(self) -> bool:
        """Whether rows keep int4 copies (``_x4``) for the stranger's pass."""
        return self._width <= _INT4_ROWS_MAX_WIDTH

    def _write_int4_rows(self, at: int, X: np.ndarray) -> None:
        """The int4 copies of stored rows ``X`` that go at row ``at`` onwards."""
        for start in range(0, len(X), _ROW_CHUNK):  # bounded float64 temporaries on a bulk load
            part = X[start : start + _ROW_CHUNK]
            r = np.arange(at + start, at + start + len(part))
            packed, self._x4_scale[r], self._x4_err[r] = rowbound.quantise_int4(part)
            self._x4[r // rowbound.TILE, :, r % rowbound.TILE] = packed

    def _folded(self, probes: np.ndarray) -> np.ndarray:
        """Probes (or spread rows) against the stored rows: for a row of copies x = (v, v, v, v) / 2,
        x . q = v . (q1 + q2 + q3 + q4) / 2, so any probe is scored exactly; a spread probe's sum is
        its own short vector, bit for bit (halves and doubles of one number add exactly)."""
        if self._fold == 1:
            return probes
        w = self._width
        q = probes.reshape(-1, _FOLD, w)
        return np.ascontiguousarray(((q[:, 0] + q[:, 1]) + (q[:, 2] + q[:, 3])) * np.float32(0.5))

    def _unfolded(self, X: np.ndarray) -> np.ndarray:
        """Stored rows back as ``dim`` columns (``embed.spread``'s layout, bit for bit)."""
        if self._fold == 1:
            return X
        return np.tile(X * np.float32(1.0 / float(_FOLD_SCALE)), (1,) * (X.ndim - 1) + (self._fold,))

    def stored(self, probes: np.ndarray) -> np.ndarray:
        """Unit probes in the layout of the stored rows and centroids (for benchmarks of the passes)."""
        return self._folded(normalise(probes))

    def add(self, label: object, X: np.ndarray) -> None:
        """Append rows for one student (new or existing)."""
        X = normalise(X)
        if X.shape[1] != self.dim:
            raise ValueError(f"embeddings must have {self.dim} columns, got {X.shape[1]}")
        self.add_many(X, [str(label)] * len(X))

    def remove(self, label: object) -> int:
        """Drop every row of one student; returns how many rows went. Unknown labels remove nothing.

        The rows stay where they are, marked removed (label -1, a bound no probe reaches), so the
        embeddings (2 KB a row) are never moved or copied: a version sharing them (``copy``) keeps
        reading its own. Pickling leaves them out; a full retrain starts without them."""
        label = str(label)
        li = self._index.get(label)
        if li is None:
            return 0
        n, L = self._n, len(self._labels)
        self._own(("_row_label", "_ones", "_h", "_g", "_err"), n)  # not the rows, nor their codes
        self._own(_LABEL_KEYS, L)
        pos = np.flatnonzero(self._row_label[:n] == li)
        k = len(pos)
        self._row_label[pos] = -1
        self._ones[pos], self._h[pos], self._g[pos], self._err[pos] = 0, 0.0, 0.0, -np.inf
        self._dead_rows += k
        # Swap the last student into the freed label index so indices stay dense.
        last = L - 1
        self._own_names()
        labels, index = self._labels, self._index
        if li != last:
            moved_label = labels[last]
            self._row_label[:n][self._row_label[:n] == last] = li
            labels[li] = moved_label
            index[moved_label] = li
            self._counts[li] = self._counts[last]
            self._centroids[li] = self._centroids[last]
            self._cos_rho[li] = self._cos_rho[last]
            self._c8[li], self._c8_scale[li], self._c8_err[li] = self._c8[last], self._c8_scale[last], self._c8_err[last]
        labels.pop()
        del index[label]
        self._counts[last] = 0
        self._centroids[last] = 0
        self._slots = None
        self._version += 1
        return k

    # -- storage shared between versions --
    def copy(self) -> Gallery:
        """A new version of this gallery, to change while others keep reading this one, sharing its
        storage: nothing is copied here.

        Both see the same buffers (``_X``, 2 KB a row, and the rest); a change never writes where
        another version reads. Appending rows or students writes past both versions' ends, in place
        when this is the newest version to append (``_Claim``) and there is room, else into new
        buffers; a change to what is already there (a student removed, or rows added to a student
        already enrolled) first copies the arrays it changes, except the embeddings: removed rows
        are only marked (``remove``). So enrolling one more student into a 100,000-student
        gallery copies nothing, and replacing one copies ~300 MB of centroids and row codes, not the
        1 GB of rows."""
        new = Gallery.__new__(Gallery)
        new.__dict__.update(self.__dict__)
        if self._claim is None:
            self._claim = _Claim()
        self._claim.reach(self._n, len(self._labels))
        self._shared = {*_ROW_KEYS, *_LABEL_KEYS, "_labels", "_index"}
        new._claim, new._shared = self._claim, set(self._shared)
        new._slots, new._memo, new._coarse_memo = None, None, None
        return new

    def _own_names(self) -> None:
        """Private copies of the students' names and their index, before changing them."""
        if "_labels" in self._shared:
            self._labels, self._index = list(self._labels), dict(self._index)
            self._shared.difference_update(("_labels", "_index"))

    def _own(self, keys: tuple[str, ...], used: int) -> None:
        """Private copies of those of ``keys`` that other versions share, before changing them."""
        for key in keys:
            if key not in self._shared:
                continue
            a = getattr(self, key)
            b = np.zeros(a.shape, dtype=a.dtype)  # calloc'd: room past ``used`` costs nothing until used
            part = rowbound.blocks_for(used) if key in _BLOCK_KEYS else used
            b[:part] = a[:part]
            setattr(self, key, b)
            self._shared.discard(key)

    def _room_for_rows(self, k: int) -> None:
        """Room for ``k`` more rows past ``_n`` that no other version reads or writes."""
        needed = self._n + k
        if needed > len(self._X):
            self._grow_rows(needed)
        shared = tuple(key for key in _ROW_KEYS if key in self._shared)
        if k and shared and not self._claim.extend_rows(self._n, needed):  # another version wrote there
            self._own(shared, self._n)

    def _room_for_labels(self, k: int) -> None:
        L = len(self._labels)
        needed = L + k
        if needed > len(self._counts):
            self._grow_labels(needed, used=L)
        shared = tuple(key for key in _LABEL_KEYS if key in self._shared)
        if k and shared and not self._claim.extend_labels(L, needed):
            self._own(shared, L)

    def _grow_rows(self, needed: int) -> None:
        # A quarter more: calloc'd, so the room is not resident until rows are written there.
        cap = max(needed + needed // 4, 64)
        X = np.zeros((cap, self._width), dtype=np.float32)
        X[: self._n] = self._X[: self._n]
        rl = np.zeros(cap, dtype=np.int32)
        rl[: self._n] = self._row_label[: self._n]
        self._X, self._row_label = X, rl
        self._resize_row_bounds(cap)
        x4, x4_scale, x4_err = self._x4, self._x4_scale, self._x4_err
        self._init_int4_rows(cap)
        if self._int4_rows:
            used = rowbound.blocks_for(self._n)
            self._x4[:used], self._x4_scale[: self._n], self._x4_err[: self._n] = x4[:used], x4_scale[: self._n], x4_err[: self._n]
        self._shared.difference_update(_ROW_KEYS)

    def _init_row_bounds(self, cap: int) -> None:
        # blocks of TILE rows, each word of a block contiguous: the scan reads one block after
        # another (2.4x faster than one array per word: 3.1 against 7.5 ms over 500,000 rows)
        self._codes = np.zeros((rowbound.blocks_for(cap), rowbound.WORDS, rowbound.TILE), dtype=np.uint64)
        self._ones = np.zeros(cap, dtype=np.int32)
        self._h = np.zeros(cap, dtype=np.float32)
        self._g = np.zeros(cap, dtype=np.float32)
        self._err = np.zeros(cap, dtype=np.float32)

    def _resize_row_bounds(self, cap: int) -> None:
        n = self._n
        old = (self._codes, self._ones, self._h, self._g, self._err)
        self._init_row_bounds(cap)
        used = rowbound.blocks_for(n)
        self._codes[:used] = old[0][:used]
        for new, before in zip((self._ones, self._h, self._g, self._err), old[1:], strict=True):
            new[:n] = before[:n]

    def _init_int4_rows(self, cap: int) -> None:
        cap = cap if self._int4_rows else 0
        self._x4 = np.zeros((rowbound.blocks_for(cap), self._width // 2, rowbound.TILE), dtype=np.uint8)
        self._x4_scale = np.zeros(cap, dtype=np.float32)
        self._x4_err = np.zeros(cap, dtype=np.float32)

    def _init_int8_centroids(self, cap: int) -> None:
        self._c8 = np.zeros((cap, self._width), dtype=np.int8)
        self._c8_scale = np.zeros(cap, dtype=np.float32)
        self._c8_err = np.zeros(cap, dtype=np.float32)

    def _grow_labels(self, needed: int, *, used: int) -> None:
        cap = needed + needed // 4 + 16
        L = used
        counts = np.zeros(cap, dtype=np.int64)
        counts[:L] = self._counts[:L]
        cents = np.zeros((cap, self._width), dtype=np.float32)
        cents[:L] = self._centroids[:L]
        cos_rho = np.ones(cap, dtype=np.float32)
        cos_rho[:L] = self._cos_rho[:L]
        self._counts, self._centroids, self._cos_rho = counts, cents, cos_rho
        c8, c8_scale, c8_err = self._c8, self._c8_scale, self._c8_err
        self._init_int8_centroids(cap)
        self._c8[:L], self._c8_scale[:L], self._c8_err[:L] = c8[:L], c8_scale[:L], c8_err[:L]
        self._shared.difference_update(_LABEL_KEYS)

    def _refresh(self, touched: np.ndarray) -> None:
        """Recompute, for the students ``touched`` (label indices), their centroids from their rows,
        ``_cos_rho`` and their rows' codes for ``rowbound`` (all depend on the student's rows only)."""
        n = self._n
        if not len(touched) or not n:
            return
        rl = self._row_label[:n]
        if len(touched) == 1:
            rows = np.flatnonzero(rl == touched[0])
        else:
            mine = np.zeros(len(self._labels), dtype=bool)
            mine[touched] = True
            rows = np.flatnonzero((rl >= 0) & mine[rl])
        rows = rows[np.argsort(rl[rows], kind="stable")]
        sorted_labels = rl[rows]
        # Blocks of whole students: one sorted copy of a 500,000-row gallery would be a 1 GB
        # temporary, and per-student sums of every student another 205 MB.
        start = 0
        while start < len(rows):
            end = min(start + _ROW_CHUNK, len(rows))
            if end < len(rows):  # extend to the end of the last student in the block
                end = int(np.searchsorted(sorted_labels, sorted_labels[end - 1], side="right"))
            block = rows[start:end]
            li = rl[block]
            starts = np.flatnonzero(np.r_[True, li[1:] != li[:-1]])
            sums = np.add.reduceat(self._X[block], starts, axis=0)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            self._centroids[li[starts]] = sums / norms
            start = end
        for start in range(0, len(touched), _ROW_CHUNK):  # bounded float64 temporaries
            some = touched[start : start + _ROW_CHUNK]
            self._c8[some], self._c8_scale[some], self._c8_err[some] = rowbound.quantise_int8(self._centroids[some])
        self._cos_rho[touched] = 1.0
        for start in range(0, len(rows), _ROW_CHUNK):  # bounded temporaries on a 500,000-row bulk load
            r = rows[start : start + _ROW_CHUNK]
            li = rl[r]
            # the bound's sign code is over the full 512 columns (a folded row's are its copies)
            codes, ones, h, g, err = rowbound.encode_rows(self._unfolded(self._X[r]), self._unfolded(self._centroids[li]))
            self._codes[r // rowbound.TILE, :, r % rowbound.TILE] = codes.T
            self._ones[r], self._h[r], self._g[r], self._err[r] = ones, h, g, err
            np.minimum.at(self._cos_rho, li, h)

    # -- views --
    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def n_labels(self) -> int:
        return len(self._labels)

    @property
    def n_rows(self) -> int:
        return self._n - self._dead_rows

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return str(label) in self._index

    def index_of(self, label: object) -> int:
        return self._index[str(label)]

    def _live_rows(self) -> slice | np.ndarray:
        return slice(0, self._n) if not self._dead_rows else np.flatnonzero(self._row_label[: self._n] >= 0)

    @property
    def embeddings(self) -> np.ndarray:
        """Every row (a view; a copy when rows were removed or are stored folded), in ``row_labels`` order."""
        return self._unfolded(self._X[self._live_rows()])

    @property
    def row_labels(self) -> list[str]:
        return [self._labels[i] for i in self._row_label[self._live_rows()]]

    def embeddings_of(self, label: object) -> np.ndarray:
        li = self._index[str(label)]
        return self._unfolded(self._X[: self._n][self._row_label[: self._n] == li]).copy()

    def counts(self) -> np.ndarray:
        return self._counts[: len(self._labels)].copy()

    def centroids(self) -> np.ndarray:
        """Unit-norm mean embedding per student, in ``labels`` order."""
        return self._unfolded(self._centroids[: len(self._labels)])

    def centroid_scores(self, probes: np.ndarray) -> np.ndarray:
        """(P, n_labels) cosine of each probe with each student's centroid (memoised for the last call)."""
        probes = normalise(probes)
        key = probes.tobytes()
        memo = self._memo
        if memo is not None and memo[0] == self._version and memo[1] == key:
            return memo[2]
        scores = self._folded(probes) @ self._centroids[: len(self._labels)].T
        self._memo = (self._version, key, scores)
        return scores

    def uses_int8_centroids(self, probes: int) -> bool:
        """Whether a call with this many probes scores centroids from their int8 copies first."""
        return len(self._labels) > self.coarse_students and probes <= _COARSE_MAX_PROBES

    def int8_centroid_scores(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((P, n_labels) approximate centroid scores, (n_labels,) bound on their error), memoised
        for the last call: the classifier and the search ask for the same probes in turn."""
        probes = normalise(probes)
        key = probes.tobytes()
        memo = self._coarse_memo
        L = len(self._labels)
        if memo is None or memo[0] != self._version or memo[1] != key:
            scored = rowbound.int8_centroid_scores(self._c8[:L], self._c8_scale[:L], self._c8_err[:L], self._folded(probes))
            memo = (self._version, key, scored)
            self._coarse_memo = memo
        return memo[2]

    def nearest_centroids(self, probes: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Per probe, the student with the nearest centroid (exactly: the same as the argmax of
        ``centroid_scores``) and its softmax probability at ``scale``, from the int8 centroids.

        Every student whose int8 score could be the best (within the error bound of the leader) is
        rescored from the float32 centroid; the probability's denominator takes the others' int8
        scores, whose error is bounded by ``int8_centroid_scores`` (~0.02 at worst, ~5e-4 typical:
        the probability is then off by ~1e-4 relative, never enough to change an argmax)."""
        probes = normalise(probes)
        approx, err = self.int8_centroid_scores(probes)
        best = np.empty(len(probes), dtype=np.int64)
        prob = np.empty(len(probes), dtype=np.float64)
        for i, (probe, row) in enumerate(zip(self._folded(probes), approx, strict=True)):
            contenders = np.flatnonzero(row + err >= float(np.max(row - err)))
            exact = self._centroids[contenders] @ probe
            top = int(np.argmax(exact))  # contenders are in label order: ties go to the first, as argmax
            z = row.copy()
            z[contenders] = exact
            z -= exact[top]
            z *= np.float32(scale)
            # float32 exp and numpy's pairwise sum: ~1e-7 relative, far below the int8 scores' error
            prob[i] = 1.0 / float(np.exp(z, out=z).sum(dtype=np.float64))
            best[i] = contenders[top]
        return best, prob

    def label_at(self, index: int) -> str:
        return self._labels[index]

    def _slot_index(self) -> np.ndarray:
        if self._slots is None:
            L, n = len(self._labels), self._n
            self._slots = label_slots(self._row_label[:n], L)
        return self._slots

    def __getstate__(self) -> dict[str, Any]:
        # Pickle only the live rows, as views (no copy unless rows were removed), never the room
        # past them; centroids are rebuilt from the rows on load (they would add 60 % to a
        # 30,000-student blob), and so are the rows' bound codes (a derived index: rebuilding it is
        # cheaper than trusting a stored one), the slot index and memo on demand.
        state = self.__dict__.copy()
        live = self._live_rows()
        state["_X"] = self._X[live]
        state["_row_label"] = self._row_label[live]
        state["_n"], state["_dead_rows"] = self.n_rows, 0
        for key in ("_counts", "_centroids", "_cos_rho", "_slots", "_memo", "_coarse_memo", "_claim", *_DERIVED_KEYS):
            state[key] = None
        state["_shared"] = set()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # galleries pickled before the row bounds, int8 centroids and shared versions existed
        self.row_bound_students, self.coarse_students, self._coarse_memo = ROW_BOUND_STUDENTS, COARSE_STUDENTS, None
        self._fold, self._may_fold = 1, True
        self._dead_rows, self._shared, self._claim = 0, set(), None
        self.__dict__.update(state)
        self.__dict__.pop("_sums", None)
        L, n = len(self._labels), self._n
        # The rows with the room ``TrainedModel.from_parts`` allocated past them (not resident until
        # used): the next version appends there instead of copying them (see ``copy``).
        self._X = _with_room(self._X)
        cap = len(self._X)
        row_label = np.zeros(cap, dtype=np.int32)
        row_label[:n] = self._row_label[:n]
        self._row_label = row_label
        room = L + L // 4 + 16
        self._counts = np.zeros(room, dtype=np.int64)
        self._counts[:L] = np.bincount(self._row_label[:n], minlength=L)[:L]
        self._centroids = np.zeros((room, self._width), dtype=np.float32)
        self._cos_rho = np.ones(room, dtype=np.float32)
        self._init_int8_centroids(room)
        self._init_row_bounds(cap)
        self._init_int4_rows(cap)
        if self._int4_rows:
            self._write_int4_rows(0, self._X[:n])
        self._refresh(np.arange(L))
        if n > self.exact_rows:  # a serving process loads the model: the first login should not wait
            rowbound.warm_up()

    # -- scoring --
    def _reduce(self, S: np.ndarray, slots: np.ndarray) -> np.ndarray:
        return reduce_per_label(S, slots, self.top_k)

    def similarities(self, probes: np.ndarray) -> np.ndarray:
        """Exact per-student score of each probe: (P, n_labels), columns in ``labels`` order."""
        probes = normalise(probes)
        if not self._labels:
            return np.zeros((len(probes), 0), dtype=np.float32)
        S = self._folded(probes) @ self._X[: self._n].T
        return self._reduce(S, self._slot_index())

    def score(self, probes: np.ndarray, labels: Sequence[object]) -> np.ndarray:
        """Exact score of probe i against student ``labels[i]`` (-inf for a student not enrolled)."""
        probes = self._folded(normalise(probes))
        slots = self._slot_index()
        out = np.full(len(probes), -np.inf, dtype=np.float32)
        for i, label in enumerate(labels):
            li = self._index.get(str(label))
            if li is None:
                continue
            rows = slots[li][slots[li] < self._n]
            s = self._X[rows] @ probes[i]
            out[i] = self._reduce(s[None, :], np.arange(len(rows))[None, :])[0, 0]
        return out

    def _upper_bounds(self, centroid_scores: np.ndarray) -> np.ndarray:
        """(P, L) upper bound on each student's score for each probe, from the centroid cosines.

        On the unit sphere angles obey the triangle inequality: a probe at angle a from a student's
        centroid is at least a - rho from each of their rows, rho being the student's radius (the widest
        centroid-to-row angle), so no row scores above cos(max(0, a - rho)). A top-k mean is at most
        the max row, so the bound holds for every ``top_k``.
        """
        L = centroid_scores.shape[1]
        c = np.clip(centroid_scores.astype(np.float64), -1.0, 1.0)
        cr = self._cos_rho[:L].astype(np.float64)
        sr = np.sqrt(np.maximum(0.0, 1.0 - cr * cr))
        ub = c * cr + np.sqrt(np.maximum(0.0, 1.0 - c * c)) * sr  # cos(a - rho)
        ub[c >= cr] = 1.0  # the probe lies within the student's radius
        return ub

    def _scores_of(self, students: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """Exact scores of one probe against the given students (label indices)."""
        sl = self._slot_index()[students]  # (m, width) row indices, n = padding
        flat = sl.ravel()
        valid = flat < self._n
        s = np.full(flat.shape, -np.inf, dtype=np.float32)
        s[valid] = self._X[flat[valid]] @ probe
        s = s.reshape(sl.shape)
        if self.top_k == 1:
            return s.max(axis=1)
        return self._reduce(s.reshape(1, -1), np.arange(flat.size).reshape(sl.shape))[0]

    def search(
        self, probes: np.ndarray, k: int = 2, *, floor: float | None = None, within: float | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` best students per probe: (labels, scores (P, k) descending; -inf pads).

        Exact (every row scored) up to ``exact_rows`` rows. Above, a branch and bound: the students
        with the highest upper bounds (``_upper_bounds``) form a ``shortlist`` that is scored
        exactly, then every other student whose bound reaches the best score found is scored too;
        when that leaves more than ``row_bound_students`` (and a 50th of the gallery), the rows'
        own bounds (``rowbound``) are checked first, and only students with a row that could
        reach the bar are scored (all rows at once when that is still a large part of the
        gallery). So:

        * without ``floor``, the first result is always the true best student, with its exact score;
          the others are the best of the students examined, with exact scores (the runner-up score
          can be an underestimate);
        * with ``floor``, every student scoring at least ``floor`` is examined: results at or above
          it are the exact top ``k``; below it they are the best examined. The login's decision
          only looks at students above its threshold (and a margin rule at the runner-up above
          threshold - margin), so that is the floor it can pass: a stranger, whose best score is
          far below it and near almost every student's centroid bound, then costs a shortlist and
          the rows' bounds, not a full pass over the rows. Below the floor the best result is
          still the exact best whenever at most ~2,000 rows could beat the best found (a genuine
          probe just under the threshold); otherwise (a stranger) it is the best examined;
        * with ``within``, only results within ``within`` of the best are exact (the others are the
          best examined): the login's margin rule compares the runner-up with the best only when it
          is that close (``within=0``: only the best matters). Without it, a genuine probe's
          runner-up, far below the best, sets the bar, and nearly every student in a large gallery
          has to be scored to confirm it.

        Equal scores keep ``labels`` order, in both paths.
        """
        probes = normalise(probes)
        P, L = len(probes), len(self._labels)
        scores = np.full((P, k), -np.inf, dtype=np.float32)
        names: list[list[str]] = [[] for _ in range(P)]
        if L == 0:
            return names, scores
        kk = min(k, L)
        exact = self._n <= self.exact_rows or L <= self.shortlist
        for start in range(0, P, _PROBE_CHUNK):
            block = probes[start : start + _PROBE_CHUNK]
            if exact:
                found = self._dense_top(block, kk)
            else:
                if self.uses_int8_centroids(len(block)):
                    cscores, cerr = self.int8_centroid_scores(block)
                else:
                    cscores, cerr = self.centroid_scores(block), None
                found = [
                    self._branch_and_bound(p, pf, cs, cerr, kk, floor, within)
                    for p, pf, cs in zip(block, self._folded(block), cscores, strict=True)
                ]
                dense = [i for i, result in enumerate(found) if result is None]
                if dense:  # strangers, mostly: one matrix product for all of them, not one each
                    for i, result in zip(dense, self._dense_top(block[dense], kk), strict=True):
                        found[i] = result
            for i, (idx, sc) in enumerate(found, start=start):
                names[i] = [self._labels[j] for j in idx]
                scores[i, : len(idx)] = sc
        return names, scores

    def _dense_top(self, probes: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        full = self.similarities(probes)
        tops = np.argsort(-full, axis=1, kind="stable")[:, :k]  # equal scores keep label order
        return [(top, full[i, top]) for i, top in enumerate(tops)]

    def row_candidates(
        self,
        probe: np.ndarray,
        stored_probe: np.ndarray,
        cscores: np.ndarray,
        bar: float,
        *,
        centroid_errors: np.ndarray | None = None,
        low_bar: float | None = None,
        low_budget: int = 0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' own bounds (``rowbound``) for one unit probe (``stored_probe``: as ``_folded`` stores
        it; ``cscores``: its centroid scores, within ``centroid_errors``): short rows from their int4
        copies, which bound far tighter in 128 dimensions, others from their sign codes over the full
        probe. See ``rowbound.candidate_rows`` for what is returned."""
        if self._int4_rows:
            return rowbound.int4_candidate_rows(
                self._n, self._x4, self._x4_scale, self._x4_err, self._row_label, stored_probe, bar, low_bar=low_bar, low_budget=low_budget
            )
        return rowbound.candidate_rows(
            self._n, self._codes, self._ones, self._h, self._g, self._err, self._row_label,
            cscores, probe, bar, centroid_errors=centroid_errors, low_bar=low_bar, low_budget=low_budget,
        )

    def _branch_and_bound(
        self,
        probe: np.ndarray,
        stored_probe: np.ndarray,
        cscores: np.ndarray,
        cerr: np.ndarray | None,
        k: int,
        floor: float | None,
        within: float | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The top ``k`` (label indices, scores), or None when scoring every row is cheaper (the
        caller does that for all such probes of a batch at once). ``stored_probe`` is ``probe`` as the
        rows are stored (``_folded``); the rows' sign codes take the full one."""
        L = len(cscores)
        # the centroid bounds (``_upper_bounds``, widened by the int8 scores' error) and the
        # shortlist: the students with the highest bounds
        ub, cand = rowbound.centroid_bounds(cscores, cerr, self._cos_rho[:L], max(self.shortlist, k))
        sc = self._scores_of(cand, stored_probe)
        best = float(sc.max())
        if floor is None and within is None:  # whoever could beat the best found
            bar = best
        else:  # whoever could enter the top k found, reaching the floor and within `within` of the best
            bar = float(np.partition(sc, len(sc) - k)[len(sc) - k])
            if floor is not None:
                bar = max(bar, floor)
            if within is not None:
                bar = max(bar, best - within)
        # Students who could reach the bar, and (below it) who could beat the best found: scoring
        # those too makes the top result exact even for a probe below the floor, when that is cheap.
        want = min(bar, best)
        more = ub >= want - _BOUND_SLACK
        more[cand] = False
        extra = np.flatnonzero(more)
        if len(extra) > max(self.row_bound_students, L // 50):  # cheaper than scoring them: measured
            # The centroid bounds leave many students (a stranger's probe, below the threshold of
            # nearly all of them): the rows' own bounds (``rowbound``, 80 bytes a row) usually rule
            # out all but a few, without an exact pass over the rows.
            rows, low = self.row_candidates(
                probe, stored_probe, cscores, bar - _BOUND_SLACK, centroid_errors=cerr,
                low_bar=want - _BOUND_SLACK if want < bar else None, low_budget=_LOW_BUDGET_ROWS,
            )
            if low is not None:
                rows = low
            else:  # too many rows could beat the best found: the contract is exactness from the bar
                more &= ub >= bar - _BOUND_SLACK
            survivors = np.zeros(L, dtype=bool)
            labels_of = self._row_label[rows]
            survivors[labels_of[labels_of >= 0]] = True  # a removed row's bound is -inf: never one
            extra = np.flatnonzero(more & survivors)
        if len(extra) * 3 > L:  # gathering that many students' rows costs more than one dense pass
            return None
        if len(extra):
            cand, sc = np.concatenate([cand, extra]), np.concatenate([sc, self._scores_of(extra, stored_probe)])
        top = np.lexsort((cand, -sc))[:k]  # by score, then label order (as the exact path)
        return cand[top], sc[top]


# --- the classifier interface --------------------------------------------------------------------


@runtime_checkable
class Classifier(Protocol):
    """What the decision needs from any classifier: top-1 label and its probability per row."""

    kind: str

    @property
    def classes(self) -> list[str]: ...

    def fit(self, X: np.ndarray, y: Sequence[object]) -> Classifier: ...

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(top-1 labels, top-1 probabilities (n,))."""
        ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, len(classes)) probabilities in ``classes`` order."""
        ...


@runtime_checkable
class IncrementalClassifier(Classifier, Protocol):
    """Classifiers that absorb one student's enrolment or removal without a refit."""

    def add(self, label: object, X: np.ndarray) -> None: ...

    def remove(self, label: object) -> int: ...


class _SklearnClassifier:
    """A scikit-learn estimator behind the common interface; labels stay strings."""

    kind = "sklearn"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.estimator: Any = None

    def _make(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_] if self.estimator is not None else []

    def fit(self, X: np.ndarray, y: Sequence[object]) -> _SklearnClassifier:
        labels = np.asarray(_as_labels(y), dtype=object)
        if len(set(labels.tolist())) < 2:
            raise ValueError(f"{self.kind} needs at least two students")
        self.estimator = self._make()
        self.estimator.fit(normalise(X), labels)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(normalise(X)), dtype=np.float64)

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        proba = self.predict_proba(X)
        # Argmax of the probabilities, not estimator.predict: SVC's Platt-scaled probabilities can
        # disagree with its decision function, and the probability is what the thesis thresholds.
        best = proba.argmax(axis=1)
        classes = self.classes
        return [classes[i] for i in best], proba[np.arange(len(best)), best]


class SVMClassifier(_SklearnClassifier):
    """The thesis's SVM: ``SVC(kernel="linear", probability=True)``. Fit cost explodes past ~1,000 ids."""

    kind = "svm"

    def _make(self) -> Any:
        from sklearn.svm import SVC

        params = {"kernel": "linear", "probability": True, "C": 1.0, "random_state": 0}
        params.update(self.params)
        return SVC(**params)

    def fit(self, X: np.ndarray, y: Sequence[object]) -> SVMClassifier:
        # scikit-learn 1.9 deprecates probability=True in favour of CalibratedClassifierCV. We keep
        # the thesis's estimator exactly (libsvm's internal Platt CV copes with 4-5 photos per
        # student; CalibratedClassifierCV's folds can lose a student entirely) and silence the notice.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*probability.*")
            super().fit(X, y)
        return self


class MLPClassifier(_SklearnClassifier):
    """The thesis's softmax MLP (one hidden layer, softmax output)."""

    kind = "mlp"

    def _make(self) -> Any:
        from sklearn.neural_network import MLPClassifier as _MLP

        params = {"hidden_layer_sizes": (512,), "max_iter": 500, "random_state": 0}
        params.update(self.params)
        return _MLP(**params)


class LogRegClassifier(_SklearnClassifier):
    """Multinomial logistic regression; C=100 because embeddings are already separable-ish."""

    kind = "logreg"

    def _make(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        params = {"C": 100.0, "max_iter": 2000}
        params.update(self.params)
        return LogisticRegression(**params)


class _GalleryClassifier:
    """Shared parts of the two distance classifiers: an incremental ``Gallery`` and a softmax."""

    kind = "gallery"

    def __init__(self, *, scale: float = 16.0, **gallery_params: Any) -> None:
        # ``scale`` turns cosines into a softmax "probability": 16 makes a 0.3 cosine gap worth ~e^5.
        # It only shapes the number reported; the open-set gate works on cosine similarity.
        self.scale = scale
        self.gallery_params = gallery_params
        self.gallery = Gallery(**gallery_params)

    @property
    def classes(self) -> list[str]:
        return self.gallery.labels

    def fit(self, X: np.ndarray, y: Sequence[object]) -> _GalleryClassifier:
        X = normalise(X)
        self.gallery = Gallery(X.shape[1], **self.gallery_params)
        self.gallery.add_many(X, y)
        return self

    def add(self, label: object, X: np.ndarray) -> None:
        self.gallery.add(label, X)

    def remove(self, label: object) -> int:
        return self.gallery.remove(label)

    def _scores(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(self._scores(normalise(X)), self.scale)

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        X = normalise(X)
        labels: list[str] = []
        probs = np.empty(len(X), dtype=np.float64)
        # In blocks: a held-out evaluation at 30,000 students would otherwise hold a 30,000 x 30,000
        # float64 softmax (7 GB). One block is the whole batch for a login, so the gallery's
        # centroid memo still serves the search that follows with the same probes.
        for start in range(0, len(X), _PROBE_CHUNK):
            proba = self.predict_proba(X[start : start + _PROBE_CHUNK])
            best = proba.argmax(axis=1)
            labels += [self.gallery.label_at(i) for i in best]
            probs[start : start + len(best)] = proba[np.arange(len(best)), best]
        return labels, probs


class CentroidClassifier(_GalleryClassifier):
    """Cosine nearest-centroid: O(students) per probe, incremental, no training beyond a mean.

    Above the gallery's ``coarse_students`` a login's few probes are classified from the int8
    centroids (``Gallery.nearest_centroids``): the same student, and a probability whose softmax
    denominator is within ~1e-4 (relative) of the float32 one; ``approximate_probability`` says
    so, and ``predict_proba`` stays exact."""

    kind = "centroid"

    @property
    def approximate_probability(self) -> bool:
        return len(self.gallery) > self.gallery.coarse_students

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        X = normalise(X)
        if not self.gallery.uses_int8_centroids(len(X)):
            return super().predict(X)
        best, probs = self.gallery.nearest_centroids(X, self.scale)
        return [self.gallery.label_at(int(i)) for i in best], probs

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return self.gallery.centroid_scores(X)


class KNNClassifier(_GalleryClassifier):
    """Cosine nearest neighbour over every enrolled row; per student the max (k=1) or top-k mean."""

    kind = "knn"

    def __init__(self, *, k: int = 1, scale: float = 16.0, **gallery_params: Any) -> None:
        gallery_params.setdefault("top_k", k)
        super().__init__(scale=scale, **gallery_params)
        self.k = k

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return self.gallery.similarities(X)


CLASSIFIER_KINDS: dict[str, type] = {
    "svm": SVMClassifier,
    "mlp": MLPClassifier,
    "logreg": LogRegClassifier,
    "centroid": CentroidClassifier,
    "knn": KNNClassifier,
}


def make_classifier(kind: str, **params: Any) -> Classifier:
    """A fresh, unfitted classifier of ``kind`` (one of ``CLASSIFIER_KINDS``)."""
    try:
        cls = CLASSIFIER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown classifier kind {kind!r}; choose from {sorted(CLASSIFIER_KINDS)}") from None
    return cls(**params)
