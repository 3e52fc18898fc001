"""The compiled loops behind ``numba_kernels`` (which allocates arrays and calls these).

Rules every loop follows:

* ``prange`` only over the batch axis (or over thread-private slots): two iterations
  never write the same element, so scatters such as col2im cannot race.
* No ``fastmath``: it reorders sums, and the tests compare against ``naive`` tightly.
* Accumulators come from the arrays' dtype (``np.zeros(n, y.dtype)``), never from a
  ``0.0`` literal, which would silently turn a float32 loop into float64.
* Outputs are allocated (zeroed where they are accumulated into) by the caller.
"""
import os

import numpy as np

# Numba's OpenMP threads (and PyTorch's, in benchmarks) spin while idle by default; on a
# busy 2-core machine that made two-thread training 4x slower than one thread. Passive
# waiting sleeps instead. Only a default: a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from numba import njit, prange  # noqa: E402 - after the OpenMP setting above


def cache_enabled(kernel_dir=None, environ=None):
    """Whether ``@njit(cache=True)`` can write its cache files.

    Numba writes next to the source unless NUMBA_CACHE_DIR is set; on a read-only
    install (system site-packages, a container image) we compile in memory instead.
    """
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return True
    kernel_dir = kernel_dir or os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(kernel_dir, "__pycache__")
    return os.access(pycache if os.path.isdir(pycache) else kernel_dir, os.W_OK)


CACHE = cache_enabled()
pjit = njit(cache=CACHE, parallel=True)


@pjit
def im2col_loop(x, kh, kw, sh, sw, pt, pl, OH, OW, col):
    """col[(n*OH+oh)*OW+ow, (i*kw+j)*C+c] = x[n, oh*sh+i-pt, ow*sw+j-pl, c], 0 in the padding.

    For fixed (row, i) the columns (j, c) are adjacent in col, and so are the pixels
    (w, c) in an NHWC image row: each window row is one contiguous run.
    """
    N, H, W, C = x.shape
    xf = x.reshape(N, H, W * C)
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                r = (n * OH + oh) * OW + ow
                w0 = ow * sw - pl
                j0, j1 = max(0, -w0), min(kw, W - w0)   # window columns inside the image
                for i in range(kh):
                    h = oh * sh + i - pt
                    k0 = i * kw * C
                    inside = 0 <= h < H
                    for m in range(kw * C):   # explicit loop: cheaper than a slice copy for C=1
                        if inside and j0 * C <= m < j1 * C:
                            col[r, k0 + m] = xf[n, h, w0 * C + m]
                        else:
                            col[r, k0 + m] = 0


@pjit
def col2im_loop(col, kh, kw, sh, sw, pt, pl, OH, OW, dx):
    """dx[n, oh*sh+i-pt, ow*sw+j-pl, c] += col[row, (i*kw+j)*C+c]; padding entries dropped."""
    N, H, W, C = dx.shape
    dxf = dx.reshape(N, H, W * C)
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                r = (n * OH + oh) * OW + ow
                w0 = ow * sw - pl
                j0, j1 = max(0, -w0), min(kw, W - w0)
                for i in range(kh):
                    h = oh * sh + i - pt
                    if h < 0 or h >= H:
                        continue
                    k0 = i * kw * C
                    for m in range(j0 * C, j1 * C):
                        dxf[n, h, w0 * C + m] += col[r, k0 + m]


@pjit
def maxpool_forward_loop(x, ph, pw, sh, sw, pt, pl, y, arg):
    """y = window max; arg = i*pw+j of the FIRST maximum (strict > keeps the earliest)."""
    N, H, W, C = x.shape
    _, OH, OW, _ = y.shape
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                first = True
                for i in range(ph):
                    h = oh * sh + i - pt
                    if h < 0 or h >= H:
                        continue
                    for j in range(pw):
                        w = ow * sw + j - pl
                        if w < 0 or w >= W:
                            continue
                        for c in range(C):
                            v = x[n, h, w, c]
                            if first or v > y[n, oh, ow, c]:
                                y[n, oh, ow, c] = v
                                arg[n, oh, ow, c] = i * pw + j
                        first = False


@pjit
def maxpool_backward_loop(dy, arg, pw, sh, sw, pt, pl, dx):
    """dx (zeroed) += dy at each window's recorded first maximum."""
    N, OH, OW, C = dy.shape
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    i, j = divmod(arg[n, oh, ow, c], pw)
                    dx[n, oh * sh + i - pt, ow * sw + j - pl, c] += dy[n, oh, ow, c]


@pjit
def avgpool_forward_loop(x, ph, pw, sh, sw, pt, pl, counts, y):
    """y = sum of the real cells of each window / counts[oh, ow]."""
    N, H, W, C = x.shape
    _, OH, OW, _ = y.shape
    for n in prange(N):
        acc = np.empty(C, y.dtype)
        for oh in range(OH):
            h0, h1 = max(oh * sh - pt, 0), min(oh * sh - pt + ph, H)
            for ow in range(OW):
                w0, w1 = max(ow * sw - pl, 0), min(ow * sw - pl + pw, W)
                acc[:] = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        for c in range(C):
                            acc[c] += x[n, h, w, c]
                for c in range(C):
                    y[n, oh, ow, c] = acc[c] / counts[oh, ow]


@pjit
def avgpool_backward_loop(dy, ph, pw, sh, sw, pt, pl, counts, dx):
    """dx (zeroed) += dy / counts over the real cells of each window."""
    N, H, W, C = dx.shape
    _, OH, OW, _ = dy.shape
    for n in prange(N):
        for oh in range(OH):
            h0, h1 = max(oh * sh - pt, 0), min(oh * sh - pt + ph, H)
            for ow in range(OW):
                w0, w1 = max(ow * sw - pl, 0), min(ow * sw - pl + pw, W)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        for c in range(C):
                            dx[n, h, w, c] += dy[n, oh, ow, c] / counts[oh, ow]
