"""The numba kernels of ``mtcnn.area_resample`` (imported on first use; see there for what they compute)."""

from __future__ import annotations

import numpy as np
from numba import njit

_MEAN = np.float32(127.5)
_SCALE = np.float32(0.0078125)


@njit(nogil=True, cache=True)
def integral(images, sums):  # type: ignore[no-untyped-def]
    """sums[n, y + 1, x + 1, c] = the sum of images[n, :y + 1, :x + 1, c]; row and column 0 stay zero."""
    for n in range(images.shape[0]):
        for y in range(images.shape[1]):
            for c in range(3):
                run = 0
                for x in range(images.shape[2]):
                    run += images[n, y, x, c]
                    sums[n, y + 1, x + 1, c] = sums[n, y, x + 1, c] + run


@njit(nogil=True, cache=True)
def cells(sums, image, y0, y1, x0, x1, out):  # type: ignore[no-untyped-def]
    """out[k, i, j, c]: cell (i, j) of rectangle k's area resampling, scaled for the nets, in float32
    operations in torch's order (sum / rows / columns, then - 127.5, * 1/128)."""
    rows, cols = out.shape[1], out.shape[2]
    for k in range(out.shape[0]):
        n = image[k]
        height = y1[k] - y0[k]
        width = x1[k] - x0[k]
        for i in range(rows):
            top = y0[k] + (i * height) // rows
            bottom = y0[k] + ((i + 1) * height + rows - 1) // rows
            kh = np.float32(bottom - top)
            for j in range(cols):
                left = x0[k] + (j * width) // cols
                right = x0[k] + ((j + 1) * width + cols - 1) // cols
                kw = np.float32(right - left)
                for c in range(3):
                    total = sums[n, bottom, right, c] - sums[n, top, right, c] - sums[n, bottom, left, c] + sums[n, top, left, c]
                    out[k, i, j, c] = (np.float32(total) / kh / kw - _MEAN) * _SCALE
