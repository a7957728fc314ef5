"""Provable upper bounds on a probe's cosine with every enrolled row, from 80 bytes a row.

Why: a probe that matches nobody (a stranger) is near every student's centroid bound (see
``Gallery.search``), so proving that no student reaches the login's threshold used to take one exact
pass over every row: 41 ms at 30,000 students, a gigabyte of reads at 100,000. This pass reads 80
bytes a row instead of 2,048 and still proves it, so a decision never changes (no approximate index).

Each row ``x`` of a student with centroid ``c`` (unit) is split, exactly, as

    x = h c + g s + e        h = x . c,  s = sign(x - h c) in {-1, +1}^512,  g = |x - h c|_1 / 512

(``g s`` is the best multiple of the sign pattern; ``e`` what is left). For a unit probe ``q``:

    q . x = h (q . c) + g (q . s) + q . e  <=  h (q . c) + g (q . s) + |e|

``q . c`` is the centroid score the search computes anyway, ``h``, ``g`` and ``|e|`` are stored per
row, and ``q . s`` comes from the 512 sign bits by popcounts: ``q`` is rounded to 16 levels
``q0 + delta k`` (k = 0..15, four bit planes), whose dot product with ``s`` is exact in integers,
and the rounding is bounded by ``|q - rounded q|_1`` (|s_j| = 1). Every term is an upper bound, so
the sum is one. On the benchmark's galleries (photos at cosine ~0.8 to their centre) ``g`` is ~0.02
and ``|e|`` ~0.32, so a stranger's rows bound at ~0.37 (the widest of 500,000 about 0.55), against
~0.6 for the centroid-and-radius bound and a 0.55 threshold floor.

Short rows (SFace's 128 numbers, stored folded: ``Gallery``) are bounded differently. In 128
dimensions a stranger's cosines spread twice as wide, and the sign codes' bound left a third of
100,000 students to score (11.6 ms a stranger). Such rows keep a 4-bit copy (72 bytes a row,
``int4_candidate_rows``): the exact integer dot product with the probe's int8 copy, plus the two
roundings' Cauchy-Schwarz bound (~0.12), rules out every row that cannot reach the bar. (An int8
copy bounds to ~0.002 but reads 128 bytes a row: 4-6 ms over 500,000 rows against 2.6.)

The scan is a numba kernel (vectorised popcounts, one thread, no GIL), compiled on first use and
cached; nothing here imports numba until a gallery is large enough to need it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "TILE",
    "WORDS",
    "as_blocks",
    "blocks_for",
    "candidate_rows",
    "centroid_bounds",
    "encode_rows",
    "int4_candidate_rows",
    "int8_centroid_scores",
    "probe_planes",
    "quantise_int4",
    "quantise_int8",
    "warm_up",
]

WORDS = 8  # 512 sign bits as 64-bit words
# The scan's codes are stored in blocks of TILE rows, (blocks, WORDS, TILE): each word of a block is
# contiguous, and one block's buffers stay in L1/L2.
TILE = 2_048


def blocks_for(rows: int) -> int:
    """Blocks of TILE rows that hold ``rows`` rows."""
    return (rows + TILE - 1) // TILE


PLANES = 4  # bit planes of the rounded probe: 16 levels
_ENCODE_CHUNK = 4_096  # rows per float64 block when encoding (16 MB temporaries)



def encode_rows(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row of ``X`` (float32, (m, 512)) against its own student's centroid (same shape):
    (codes (WORDS, m) uint64, ones (m,) int32, h (m,) float32, g (m,) float32, err (m,) float32).

    ``err`` is rounded up, so it stays an upper bound of the residual's norm in float32."""
    m, dim = X.shape
    if dim != 64 * WORDS:
        raise ValueError(f"row bounds need {64 * WORDS}-d rows, got {dim}")
    codes = np.empty((WORDS, m), dtype=np.uint64)
    ones = np.empty(m, dtype=np.int32)
    h = np.empty(m, dtype=np.float32)
    g = np.empty(m, dtype=np.float32)
    err = np.empty(m, dtype=np.float32)
    for start in range(0, m, _ENCODE_CHUNK):
        x = X[start : start + _ENCODE_CHUNK].astype(np.float64)
        c = centroids[start : start + _ENCODE_CHUNK].astype(np.float64)
        hh = np.einsum("ij,ij->i", x, c).astype(np.float32)  # the stored value is the one the bound uses
        r = x - hh.astype(np.float64)[:, None] * c
        bits = r > 0
        gg = (np.abs(r).sum(axis=1) / dim).astype(np.float32)
        r -= gg.astype(np.float64)[:, None] * np.where(bits, 1.0, -1.0)
        e = np.sqrt(np.einsum("ij,ij->i", r, r))
        e32 = e.astype(np.float32)
        e32 = np.where(e32.astype(np.float64) < e, np.nextafter(e32, np.float32(np.inf)), e32)
        sl = slice(start, start + len(x))
        codes[:, sl] = np.packbits(bits, axis=1, bitorder="little").view(np.uint64).T
        ones[sl] = bits.sum(axis=1)
        h[sl], g[sl], err[sl] = hh, gg, e32
    return codes, ones, h, g, err


def as_blocks(codes: np.ndarray) -> np.ndarray:
    """(k, rows) per-row columns (the sign codes' WORDS, an int4 row's bytes) in the scans' layout,
    (blocks, k, TILE)."""
    k, rows = codes.shape
    blocks = np.zeros((blocks_for(rows), k, TILE), dtype=codes.dtype)
    padded = np.zeros((k, len(blocks) * TILE), dtype=codes.dtype)
    padded[:, :rows] = codes
    blocks[:] = padded.reshape(k, len(blocks), TILE).transpose(1, 0, 2)
    return blocks


def probe_planes(probe: np.ndarray) -> tuple[np.ndarray, float, float, int, float]:
    """The rounded probe as (planes (PLANES, WORDS) uint64, q0, delta, sum of levels, |q - rounded|_1)."""
    q = np.asarray(probe, dtype=np.float64)
    q0 = float(q.min())
    spread = float(q.max()) - q0
    delta = spread / (2**PLANES - 1) if spread > 0 else 1.0
    k = np.clip(np.rint((q - q0) / delta), 0, 2**PLANES - 1).astype(np.int64)
    # The L1 rounding error, with room for the float64 arithmetic that computed it.
    l1 = float(np.abs(q - (q0 + delta * k)).sum()) * (1 + 1e-9) + 1e-9
    bits = ((k[None, :] >> np.arange(PLANES)[:, None]) & 1).astype(bool)
    planes = np.packbits(bits, axis=1, bitorder="little").view(np.uint64).reshape(PLANES, WORDS)
    return np.ascontiguousarray(planes), q0, delta, int(k.sum()), l1


def candidate_rows(
    n: int,
    codes: np.ndarray,
    ones: np.ndarray,
    h: np.ndarray,
    g: np.ndarray,
    err: np.ndarray,
    row_label: np.ndarray,
    centroid_scores: np.ndarray,
    probe: np.ndarray,
    bar: float,
    *,
    centroid_errors: np.ndarray | None = None,
    low_bar: float | None = None,
    low_budget: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows among the first ``n`` whose upper bound reaches ``bar``: every row scoring at least
    ``bar`` against ``probe`` is among them (``centroid_scores``: the probe against each student,
    exact or within ``centroid_errors`` of it).

    With ``low_bar`` (<= ``bar``), also the rows whose bound reaches ``low_bar`` when there are at
    most ``low_budget`` of them (None when there are more): what a caller needs to prove a lower
    score the best when that is cheap, in the same pass."""
    if codes.ndim == 2:  # (WORDS, rows), as encode_rows returns them
        codes = as_blocks(codes)
    planes, q0, delta, total, l1 = probe_planes(probe)
    return _run_scan(
        _kernel(),
        n,
        (
            codes,
            ones,
            h,
            g,
            err,
            row_label,
            np.ascontiguousarray(centroid_scores, dtype=np.float32),
            np.zeros(len(centroid_scores), np.float32) if centroid_errors is None else centroid_errors,
            planes,
            q0,
            delta,
            total,
            l1,
        ),
        bar,
        low_bar,
        low_budget,
    )


def _run_scan(kernel: Any, n: int, args: tuple, bar: float, low_bar: float | None, low_budget: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A row scan's kernel over the first ``n`` rows: (rows reaching ``bar``, rows reaching ``low_bar`` or
    None when more than ``low_budget`` do). Both kernels take (n, *args, bar, out, low_bar, low_out)."""
    out = np.empty(n, dtype=np.int64)
    low_out = np.empty(low_budget if low_bar is not None else 0, dtype=np.int64)
    found, low_found = kernel(n, *args, float(bar), out, float(low_bar) if low_bar is not None else float(bar), low_out)
    low = low_out[:low_found] if low_bar is not None and low_found <= low_budget else None
    return out[:found], low


# The float32 roundings of an int8 score (an exact int32 sum times two scales), with a wide margin.
INT8_SUM_SLACK = 1e-5


def _levels(X: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (float32, (m, d)) rounded to integer levels -top..top times a per-row scale (the row's
    largest magnitude over ``top``): (levels int8, scale float32, |x - scale levels| float64)."""
    peak = np.abs(X).max(axis=1) if X.size else np.zeros(len(X), dtype=np.float32)
    scale = (np.where(peak > 0, peak, 1.0) / top).astype(np.float32)
    levels = np.clip(np.rint(X / scale[:, None]), -top, top).astype(np.int8)
    return levels, scale, np.linalg.norm(X.astype(np.float64) - levels * scale[:, None].astype(np.float64), axis=1)


def _rounded_up(err: np.ndarray) -> np.ndarray:
    """A float64 rounding error as a float32 that still bounds it."""
    return (err * (1 + 1e-6) + 1e-9).astype(np.float32)


def quantise_int8(C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit rows or centroids (float32, (m, d)) as int8 levels times a per-row scale: (levels, scale,
    err), ``err`` = |c - scale levels| rounded up. A quarter of the bytes of float32: the pass over
    100,000 students' centroids that every probe needs reads 51 MB instead of 205."""
    C = np.asarray(C, dtype=np.float32)
    levels = np.empty(C.shape, dtype=np.int8)
    scale = np.empty(len(C), dtype=np.float32)
    err = np.empty(len(C), dtype=np.float32)
    for start in range(0, len(C), _ENCODE_CHUNK):  # bounded float64 temporaries on a bulk load
        sl = slice(start, min(start + _ENCODE_CHUNK, len(C)))
        levels[sl], scale[sl], e = _levels(C[sl], 127)
        err[sl] = _rounded_up(e)
    return levels, scale, err


def _quantise_probes(probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Probes as int8 levels, their scales, and the largest |q - scale levels| among them."""
    plevels, pscale, perr = _levels(np.ascontiguousarray(probes, dtype=np.float32), 127)
    return plevels, pscale, float(perr.max(initial=0.0))


def int8_centroid_scores(levels: np.ndarray, scale: np.ndarray, err: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, L) approximate scores of unit ``probes`` against centroids quantised by ``quantise_int8``
    (``err`` its errors), and (L,) a bound on their error for every probe.

    The probes are rounded to int8 too and the dot products summed exactly in integers; by
    Cauchy-Schwarz |q . c - q' . c'| <= |c - c'| + |q - q'| (1 + |c - c'|) for q and c of norm <= 1."""
    plevels, pscale, perr = _quantise_probes(probes)
    dots = np.empty((len(plevels), len(levels)), dtype=np.int32)
    if len(levels) and len(plevels):
        _int8_kernel()(levels, plevels, dots)
    scores = dots.astype(np.float32) * scale[None, :] * pscale[:, None]
    bound = err + np.float32(perr * (1 + 1e-6)) * (1 + err) + np.float32(INT8_SUM_SLACK)
    return scores, bound.astype(np.float32)


def quantise_int4(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit rows (float32, (m, d), d even) as 4-bit levels -7..7 times a per-row scale: (packed (m, d/2)
    uint8, scale, err), ``err`` = |x - scale levels| rounded up. Column 2i is byte i's low nibble and
    column 2i + 1 its high one, each stored as level + 8 (1..15)."""
    levels, scale, err = _levels(np.asarray(X, dtype=np.float32), 7)
    stored = (levels + 8).astype(np.uint8)
    packed = stored[:, 0::2] | (stored[:, 1::2] << 4)
    return packed, scale, _rounded_up(err)


def int4_candidate_rows(
    n: int,
    packed: np.ndarray,
    scale: np.ndarray,
    err: np.ndarray,
    row_label: np.ndarray,
    probe: np.ndarray,
    bar: float,
    *,
    low_bar: float | None = None,
    low_budget: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``candidate_rows`` from the rows' own int4 copies (``quantise_int4``, in blocks of TILE rows:
    (blocks, d/2, TILE)): every row among the first ``n`` whose score against ``probe`` (norm <= 1)
    could reach ``bar``. The probe is rounded to int8 and the product summed exactly in integers; by
    Cauchy-Schwarz the score is within |x - x'| + |q - q'| (1 + |x - x'|) of it (x' the int4 row, q'
    the int8 probe). For SFace's 128 numbers that bound is ~0.12 wide, the sign codes' ~0.3: it rules
    out every row of a stranger, from 72 bytes a row."""
    plevels, pscale, perr = _quantise_probes(np.asarray(probe, dtype=np.float32)[None, :])
    args = (packed, scale, err, row_label, plevels[0], float(pscale[0]), perr * (1 + 1e-6) + INT8_SUM_SLACK)
    return _run_scan(_int4_rows_kernel(), n, args, bar, low_bar, low_budget)


def centroid_bounds(
    cscores: np.ndarray, cerr: np.ndarray | None, cos_rho: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """``Gallery._upper_bounds`` for one probe (its centroid scores, known to within ``cerr``) and
    the indices of the ``m`` students with the highest bounds, in one compiled pass."""
    L = len(cscores)
    ub = np.empty(L, dtype=np.float64)
    top = np.empty(min(m, L), dtype=np.int64)
    errors = np.zeros(L, np.float32) if cerr is None else cerr
    _bounds_kernel()(np.ascontiguousarray(cscores, dtype=np.float32), errors, cos_rho, len(top), ub, top)
    return ub, top


@lru_cache(maxsize=1)
def warm_up() -> None:
    """Import numba and load (or compile, ~2 s, then cached on disk) the kernels, once per process:
    a gallery large enough to need them calls this when it is built or loaded, so the first
    login's probe does not pay for it."""
    X = np.eye(64 * WORDS, dtype=np.float32)[:2]
    codes, ones, h, g, err = encode_rows(X, X)
    label = np.zeros(2, dtype=np.int32)
    candidate_rows(2, codes, ones, h, g, err, label, np.ones(1, np.float32), X[0], 0.0, low_bar=-1.0, low_budget=2)
    levels, scale, c_err = quantise_int8(X)
    int8_centroid_scores(levels, scale, c_err, X)
    packed, scale, r_err = quantise_int4(X[:, :128])
    int4_candidate_rows(2, as_blocks(packed.T), scale, r_err, label, X[0, :128], 0.0, low_bar=-1.0, low_budget=2)
    centroid_bounds(np.ones(2, np.float32), c_err, np.ones(2, np.float32), 1)


@lru_cache(maxsize=1)
def _bounds_kernel() -> Any:
    from ._rowbound_scan import centroid_bounds as kernel

    return kernel


@lru_cache(maxsize=1)
def _kernel() -> Any:
    # Imported on first use: numba takes ~0.5 s to import and a gallery below ``Gallery.exact_rows``
    # never needs it.
    from ._rowbound_scan import scan

    return scan


@lru_cache(maxsize=1)
def _int4_rows_kernel() -> Any:
    from ._rowbound_scan import int4_row_scan

    return int4_row_scan


@lru_cache(maxsize=1)
def _int8_kernel() -> Any:
    from ._rowbound_scan import int8_dots

    return int8_dots
