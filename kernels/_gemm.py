"""The matrix products of convolution and dense layers, split across threads when large.

Why not let BLAS use its own threads: after each product, OpenBLAS keeps its idle
threads spinning for a while, and on a machine with few cores they take the cores the
Numba loops need next (a parallel loop then waits a whole scheduler tick, ~4 ms, for a
thread to get a core). Measured on 2 cores, a Fashion-MNIST training step with Numba and
BLAS both on 2 threads: 36 ms; the same with BLAS's idle threads told to sleep at once
(OPENBLAS_THREAD_TIMEOUT=4, which only the environment can set): 27.5 ms. So here every
product runs on single-threaded BLAS, and a large one is cut into blocks computed at
once by a few Python threads (NumPy releases the GIL inside BLAS, though np.matmul
not for every shape: see ``row_block_sum``). Those threads sleep while they wait, so
nothing spins.

How to cut: along the longer side, so that each thread reads its own part of the big
operand. A convolution's (N·OH·OW, K) x (K, C_out) product is cut into row blocks; a
dense layer's (batch 64, 4096) x (4096, 4096) one into column blocks of the weights
(cut by rows, each thread would read all 64 MB of weights: AlexNet's epoch went from
40 s to 50 s on 2 threads), and its weight gradient into row blocks of the result
(``matmul_tn``).

The thread count is Numba's (``numba.get_num_threads()``): ``minicnn.threads`` sets it,
for both kinds of work, in one place. CuPy arrays go straight to CuPy.
"""
import concurrent.futures
import contextlib
import os
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

from .backend import get_array_module, is_gpu

try:
    import numba
except ImportError:
    numba = None

#: A product is split only when each thread gets at least this many FLOPs (about 0.05 ms
#: of work): below it, handing work to another thread costs more than it saves. Measured
#: on two threads: LeNet conv1's (36864, 25) x (25, 6) product, 11 MFLOP, 0.45 ms whole
#: and 0.28 ms as two row blocks; LeNet's 4096x150x16 conv product, 20 MFLOP, gained too.
#: (The Fashion MLP's 64x784x128 products lost, 1.10 s against 0.65 s per epoch, when
#: cut into narrow column blocks: MIN_COLUMNS_PER_THREAD below keeps them whole.)
MIN_FLOPS_PER_THREAD = 4_000_000
#: ... and only into blocks of at least this many columns when cut by columns: BLAS is
#: slow on thin blocks (a 64x3000x84 product, a dense layer of LeNet's size: 0.39 ms
#: whole, 0.45 ms as two 42-column halves on two threads; its weight gradient 0.39
#: against 1.22 ms).
MIN_COLUMNS_PER_THREAD = 128
_blas = None        # threadpoolctl's handle on the BLAS library, made on first use
_pools = {}         # thread count -> ThreadPoolExecutor, kept for the process's life
_inside = threading.local()     # .depth: how many single_threaded_blas blocks this thread is in

# A forked child inherits the pools but not their threads: it must make its own.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pools.clear)


@contextlib.contextmanager
def single_threaded_blas(rescan=False):
    """A block in which BLAS runs each call on the calling thread only.

    Only the outermost block of a thread sets the limit: setting and restoring it costs
    about 12 us (threadpoolctl reads and sets OpenBLAS's thread count), which was 18% of
    a Fashion-MNIST MLP training step when paid for every product. ``fit``, ``evaluate``
    and ``predict`` open one block (``minicnn.threads.compute_threads``) and the products
    inside it pay nothing. threadpoolctl finds the BLAS libraries by scanning the process
    (0.65 ms), so that is done on the first call and when ``rescan`` asks, as ``fit`` does:
    a library loaded since (SciPy's own OpenBLAS, say) is then limited too.
    """
    global _blas
    depth = getattr(_inside, "depth", 0)
    if not depth and (_blas is None or rescan):
        _blas = ThreadpoolController().select(user_api="blas")
    with contextlib.nullcontext() if depth else _blas.limit(limits=1):
        _inside.depth = depth + 1
        try:
            yield
        finally:
            _inside.depth = depth


def _blocks(length, flops, min_length=1):
    """[(start, stop), …]: how to cut a side of ``length`` of a product of ``flops`` FLOPs
    into blocks of at least ``min_length``."""
    if flops < 2 * MIN_FLOPS_PER_THREAD:
        return [(0, length)]        # too small to split, whatever the thread count
    threads = numba.get_num_threads() if numba is not None else 1
    return _even_blocks(length, int(max(1, min(threads, length // min_length, flops // MIN_FLOPS_PER_THREAD))))


def _even_blocks(length, parts):
    """[(start, stop), …]: ``length`` cut into ``parts`` blocks, their sizes within one."""
    edges = [length * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _run(work, blocks):
    """``work(start, stop)`` for every block, on as many threads as there are blocks: the
    calling thread takes the first block itself (one hand-over fewer to wait for)."""
    if len(blocks) == 1:
        return [work(*blocks[0])]
    helpers = len(blocks) - 1
    pool = _pools.get(helpers)
    if pool is None:
        pool = _pools[helpers] = concurrent.futures.ThreadPoolExecutor(helpers)
    others = [pool.submit(work, *block) for block in blocks[1:]]
    return [work(*blocks[0])] + [future.result() for future in others]


def run_chunks(work, chunks, threads):
    """``work(i, start, stop)`` for every chunk ``i = (start, stop)``, dealt out to at most
    ``threads`` threads in turn (thread t takes chunks t, t + T, ...), each running its
    Numba loops and BLAS calls on itself alone. For work whose chunks are independent
    (each writes its own rows); the caller keeps BLAS single-threaded meanwhile."""
    threads = max(1, min(threads, len(chunks)))

    def share(first, step):
        before = numba.get_num_threads() if numba is not None else 1
        if numba is not None:
            numba.set_num_threads(1)           # per thread: the other thread keeps its own
        try:
            for i in range(first, len(chunks), step):
                work(i, *chunks[i])
        finally:
            if numba is not None:
                numba.set_num_threads(before)
    _run(share, [(t, threads) for t in range(threads)])


def matmul(a, b, out=None):
    """``a @ b`` (written into ``out`` when given), its rows or columns shared between threads.

    Shapes:
        a: (M, K).  b: (K, N).  out and the result: (M, N).
    """
    if is_gpu(a):
        return get_array_module(a).matmul(a, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a, b))
    with single_threaded_blas():
        if M >= N:
            _run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), _blocks(M, 2 * M * K * N))
        else:
            def columns(lo, hi):
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
            _run(columns, _blocks(N, 2 * M * K * N, MIN_COLUMNS_PER_THREAD))
    return out


def row_block_sum(a, b):
    """``a.T @ b`` through ``np.dot``, which lets other Python threads run meanwhile.

    ``a.T @ b`` (np.matmul) kept the GIL when the result is small (NumPy 2.4: results of
    9 x 32 and 25 x 6 values, the weight gradients of Fashion's and LeNet's conv1, kept
    it; 16 x 32 released it), so the blocks of a split sum ran one after the other and
    two threads lost to one (1.58 against 2.32 ms, which once made such sums stay whole).
    np.dot calls the same BLAS product, with the same numbers, and released the GIL in
    every shape tried.

    Shapes: a: (M, K).  b: (M, N).  Returns (K, N).
    """
    return np.dot(a.T, b)


def matmul_tn(a, b, out=None):
    """``a.T @ b`` (written into ``out`` when given), a sum over the rows of both: with more
    rows than columns (a convolution's pixels) each thread sums its own block of rows and
    the partial sums are added; otherwise (a dense layer's weights) each thread computes
    its own block of output rows, from its own columns of ``a``, one contiguous block
    each: AlexNet's 4096 x 4096 weight gradient from a batch of 64 took 15.6 ms on two
    threads, against 21.8 ms cut into blocks of output columns. How many blocks is
    decided as for output columns (at least MIN_COLUMNS_PER_THREAD of them per thread),
    which keeps small products whole: the Fashion MLP's 784 x 128 gradient cut in two
    made its two-thread epoch 0.70-0.72 s against 0.58-0.61 s whole (alternating runs),
    though alone it ran 7% faster cut.

    Shapes:
        a: (M, K).  b: (M, N).  out and the result: (K, N).
    """
    if is_gpu(a):
        return get_array_module(a).matmul(a.T, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    if out is None:
        out = np.empty((K, N), dtype=np.result_type(a, b))
    with single_threaded_blas():
        if M >= N:
            partial_sums = _run(lambda lo, hi: row_block_sum(a[lo:hi], b[lo:hi]), _blocks(M, 2 * M * K * N))
            out[...] = partial_sums[0]
            for part in partial_sums[1:]:
                out += part
        else:
            def output_rows(lo, hi):
                np.matmul(a[:, lo:hi].T, b, out=out[lo:hi])
            _run(output_rows, _even_blocks(K, len(_blocks(N, 2 * M * K * N, MIN_COLUMNS_PER_THREAD))))
    return out
