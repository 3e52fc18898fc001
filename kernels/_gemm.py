"""The matrix products of convolution and dense layers, split across threads when large.

Why not let BLAS use its own threads: after each product, OpenBLAS keeps its idle
threads spinning for a while, and on a machine with few cores they take the cores the
Numba loops need next (a parallel loop then waits a whole scheduler tick, ~4 ms, for a
thread to get a core). Measured on 2 cores, a Fashion-MNIST training step with Numba and
BLAS both on 2 threads: 36 ms; the same with BLAS's idle threads told to sleep at once
(OPENBLAS_THREAD_TIMEOUT=4, which only the environment can set): 27.5 ms. So here every
product runs on single-threaded BLAS, and a large one is cut into row blocks computed at
once by a few Python threads (NumPy releases the GIL inside BLAS). Those threads sleep
while they wait, so nothing spins.

The thread count is Numba's (``numba.get_num_threads()``): ``minicnn.threads`` sets it,
for both kinds of work, in one place. CuPy arrays go straight to CuPy.
"""
import concurrent.futures

import numpy as np
from threadpoolctl import ThreadpoolController

from .backend import get_array_module, is_gpu

try:
    import numba
except ImportError:
    numba = None

#: A product is split only when each thread gets at least this many FLOPs: below it,
#: handing work to another thread costs more than it saves.
MIN_FLOPS_PER_THREAD = 2_000_000

_blas = None        # threadpoolctl's handle on the BLAS library, made on first use
_pools = {}         # thread count -> ThreadPoolExecutor, kept for the process's life


def _single_threaded_blas():
    """A context in which BLAS runs each call on the calling thread only."""
    global _blas
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas.limit(limits=1)


def _row_blocks(rows, flops):
    """[(start, stop), …]: how to cut ``rows`` rows of a product of ``flops`` FLOPs."""
    threads = numba.get_num_threads() if numba is not None else 1
    parts = int(max(1, min(threads, rows, flops // MIN_FLOPS_PER_THREAD)))
    edges = np.linspace(0, rows, parts + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def _run(work, blocks):
    """``work(start, stop)`` for every block, on as many threads as there are blocks."""
    if len(blocks) == 1:
        return [work(*blocks[0])]
    pool = _pools.get(len(blocks))
    if pool is None:
        pool = _pools[len(blocks)] = concurrent.futures.ThreadPoolExecutor(len(blocks))
    return list(pool.map(lambda block: work(*block), blocks))


def matmul(a, b, out=None):
    """``a @ b`` (written into ``out`` when given), rows of ``a`` shared between threads.

    Shapes:
        a: (M, K).  b: (K, N).  out and the result: (M, N).
    """
    if is_gpu(a):
        return get_array_module(a).matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    blocks = _row_blocks(a.shape[0], 2 * a.shape[0] * a.shape[1] * b.shape[1])
    with _single_threaded_blas():
        _run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), blocks)
    return out


def matmul_tn(a, b):
    """``a.T @ b``: a sum over the rows of both, each thread summing its own block of rows.

    Shapes:
        a: (M, K).  b: (M, N).  Returns (K, N).
    """
    if is_gpu(a):
        return a.T @ b
    blocks = _row_blocks(a.shape[0], 2 * a.shape[0] * a.shape[1] * b.shape[1])
    with _single_threaded_blas():
        partial_sums = _run(lambda lo, hi: a[lo:hi].T @ b[lo:hi], blocks)
    total = partial_sums[0]
    for part in partial_sums[1:]:
        total += part
    return total
