"""The numba kernel of ``rowbound.candidate_rows`` (imported on first use; see there for the bound)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

@intrinsic
def popcount(typingctx: Any, word: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


# Written out word by word and in separate loops: LLVM then vectorises the popcounts across rows
# (AVX-512 VPOPCNTQ on this machine's CPU); a loop over the words of each row stayed scalar and was
# 1.6x slower. The codes come in blocks of rows (see ``rowbound.TILE``).
@njit(nogil=True, cache=True)
def scan(n, codes, ones, h, g, err, row_label, cscores, cerr, planes, q0, delta, total, l1, bar, out, low_bar, low_out):  # type: ignore[no-untyped-def]
    tile = codes.shape[2]  # codes: (blocks, 8 words, tile rows)
    level = np.empty(tile, np.uint64)
    bound = np.empty(tile, np.float64)
    p0 = planes[0]
    p1 = planes[1]
    p2 = planes[2]
    p3 = planes[3]
    a0, a1, a2, a3, a4, a5, a6, a7 = p0[0], p0[1], p0[2], p0[3], p0[4], p0[5], p0[6], p0[7]
    b0, b1, b2, b3, b4, b5, b6, b7 = p1[0], p1[1], p1[2], p1[3], p1[4], p1[5], p1[6], p1[7]
    c0, c1, c2, c3, c4, c5, c6, c7 = p2[0], p2[1], p2[2], p2[3], p2[4], p2[5], p2[6], p2[7]
    d0, d1, d2, d3, d4, d5, d6, d7 = p3[0], p3[1], p3[2], p3[3], p3[4], p3[5], p3[6], p3[7]
    found = 0
    low_found = 0
    for block in range(codes.shape[0]):
        start = block * tile
        m = min(tile, n - start)
        if m <= 0:
            break
        words = codes[block]
        w0, w1, w2, w3, w4, w5, w6, w7 = words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7]
        for t in range(m):
            x0, x1, x2, x3, x4, x5, x6, x7 = w0[t], w1[t], w2[t], w3[t], w4[t], w5[t], w6[t], w7[t]
            e0 = (
                popcount(a0 & x0) + popcount(a1 & x1) + popcount(a2 & x2) + popcount(a3 & x3)
                + popcount(a4 & x4) + popcount(a5 & x5) + popcount(a6 & x6) + popcount(a7 & x7)
            )
            e1 = (
                popcount(b0 & x0) + popcount(b1 & x1) + popcount(b2 & x2) + popcount(b3 & x3)
                + popcount(b4 & x4) + popcount(b5 & x5) + popcount(b6 & x6) + popcount(b7 & x7)
            )
            e2 = (
                popcount(c0 & x0) + popcount(c1 & x1) + popcount(c2 & x2) + popcount(c3 & x3)
                + popcount(c4 & x4) + popcount(c5 & x5) + popcount(c6 & x6) + popcount(c7 & x7)
            )
            e3 = (
                popcount(d0 & x0) + popcount(d1 & x1) + popcount(d2 & x2) + popcount(d3 & x3)
                + popcount(d4 & x4) + popcount(d5 & x5) + popcount(d6 & x6) + popcount(d7 & x7)
            )
            level[t] = e0 + 2 * e1 + 4 * e2 + 8 * e3
        for t in range(m):
            r = start + t
            # the rounded probe . s = sum_j (q0 + delta k_j) s_j, with s_j = 2 bit_j - 1
            qs = q0 * (2 * np.int64(ones[r]) - 512) + delta * (2 * np.int64(level[t]) - total)
            s = row_label[r]  # the student's centroid score is known to within cerr
            bound[t] = h[r] * np.float64(cscores[s]) + abs(h[r]) * np.float64(cerr[s]) + g[r] * (qs + l1) + err[r]
        found, low_found = _keep(bound, m, start, bar, out, found, low_bar, low_out, low_found)
    return found, low_found


@njit(nogil=True, cache=True)
def _keep(bound, m, start, bar, out, found, low_bar, low_out, low_found):  # type: ignore[no-untyped-def]
    """A block's rows whose bound reaches ``bar`` (into ``out``) and ``low_bar`` (into ``low_out``, counting
    on past its end: the caller then knows it is incomplete)."""
    budget = len(low_out)
    for t in range(m):
        if bound[t] >= low_bar:
            if low_found < budget:
                low_out[low_found] = start + t
            low_found += 1
            if bound[t] >= bar:
                out[found] = start + t
                found += 1
    return found, low_found


# int8 x int8 products summed in int32 (exact: 512 x 127 x 127 < 2**31); written with int16 products
# so that LLVM emits VPMADDWD (32 products an instruction), 1.6x faster than converting to float32.
@njit(nogil=True, cache=True)
def int8_dots(levels, probe_levels, out):  # type: ignore[no-untyped-def]
    # students outer, probes inner: each student's 512 bytes are read once for a batch of probes
    for s in range(levels.shape[0]):
        row = levels[s]
        for p in range(probe_levels.shape[0]):
            probe = probe_levels[p]
            acc = np.int32(0)
            for j in range(row.shape[0]):
                acc += np.int32(np.int16(probe[j]) * np.int16(row[j]))
            out[p, s] = acc


# rowbound.int4_candidate_rows: rows in blocks (blocks, d/2 bytes, tile rows), two 4-bit levels a byte
# stored as level + 8. Each byte position is one vector operation across a block's rows, no horizontal
# sum per row: 2.6 ms over 500,000 rows of 128, where a row-at-a-time int8 loop took 7.
@njit(nogil=True, cache=True)
def int4_row_scan(n, packed, scale, err, row_label, probe, pscale, perr, bar, out, low_bar, low_out):  # type: ignore[no-untyped-def]
    tile = packed.shape[2]
    acc = np.empty(tile, np.int32)
    bound = np.empty(tile, np.float64)
    offset = np.int32(0)  # sum_j q_j * 8: the stored levels' offset
    for j in range(probe.shape[0]):
        offset += np.int32(probe[j]) * 8
    found = 0
    low_found = 0
    for block in range(packed.shape[0]):
        start = block * tile
        m = min(tile, n - start)
        if m <= 0:
            break
        rows = packed[block]
        acc[:] = 0
        for b in range(rows.shape[0]):
            low_q = np.int16(probe[2 * b])
            high_q = np.int16(probe[2 * b + 1])
            column = rows[b]
            for t in range(tile):
                v = np.int16(column[t])
                acc[t] += np.int32(low_q * (v & 15) + high_q * (v >> 4))
        for t in range(m):
            r = start + t
            e = np.float64(err[r])
            bound[t] = np.float64(acc[t] - offset) * np.float64(scale[r]) * pscale + e + perr * (1.0 + e)
            if row_label[r] < 0:  # a removed row
                bound[t] = -np.inf
        found, low_found = _keep(bound, m, start, bar, out, found, low_bar, low_out, low_found)
    return found, low_found


@njit(nogil=True, cache=True)
def centroid_bounds(cscores, cerr, cos_rho, m, ub, top):  # type: ignore[no-untyped-def]
    # Gallery._upper_bounds for one probe in one pass, keeping the m students with the highest
    # bounds on the way (the search's shortlist): ~10x less than numpy's temporaries and argpartition.
    kept = 0
    low = np.inf  # the lowest bound kept, once m are kept
    low_at = 0
    for s in range(cscores.shape[0]):
        c = min(max(np.float64(cscores[s]) + np.float64(cerr[s]), -1.0), 1.0)
        cr = np.float64(cos_rho[s])
        if c >= cr:
            b = 1.0  # the probe lies within the student's radius
        else:
            b = c * cr + np.sqrt(max(0.0, 1.0 - c * c)) * np.sqrt(max(0.0, 1.0 - cr * cr))  # cos(a - rho)
        ub[s] = b
        if kept < m:
            top[kept] = s
            kept += 1
            if kept == m:
                low, low_at = np.inf, 0
                for i in range(m):
                    if ub[top[i]] < low:
                        low, low_at = ub[top[i]], i
        elif b > low:
            top[low_at] = s
            low, low_at = np.inf, 0
            for i in range(m):
                if ub[top[i]] < low:
                    low, low_at = ub[top[i]], i
    return kept
