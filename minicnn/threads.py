"""How many threads minicnn computes with, decided in one place.

Two thread pools live in one minicnn process: Numba's (the conv and pooling loops) and
the BLAS library's (the matrix products). They take turns, never run at once, but an
idle OpenBLAS thread keeps spinning for a while after each product and steals the core
a Numba thread needs next; and a parallel loop waits for its slowest thread, so one
descheduled thread costs milliseconds. Measured on a shared 2-core machine, a LeNet
training step took 20 ms with one thread in each pool and 50-150 ms with two.

So while minicnn trains, evaluates or predicts, BLAS gets one thread (our matrix products
are small: the batch is the big dimension) and Numba gets ``MINICNN_NUM_THREADS`` threads,
default 1 (or what ``set_num_threads(n)`` chose). On a quiet machine with many cores, try ``MINICNN_NUM_THREADS=4`` and compare
epoch times. Both settings are restored when the call returns.
"""
import contextlib
import os

from threadpoolctl import threadpool_limits

try:
    import numba
except ImportError:   # the NumPy kernels need no thread pool of their own
    numba = None


_chosen = None   # set by set_num_threads; otherwise the environment decides


def set_num_threads(n):
    """Use ``n`` Numba threads in minicnn's calls from now on (None: back to the environment)."""
    global _chosen
    _chosen = None if n is None else int(n)


def num_threads():
    """Threads for the Numba kernels: set_num_threads(n), else ``MINICNN_NUM_THREADS``, else 1;
    at most the size of Numba's pool."""
    wanted = _chosen if _chosen is not None else int(os.environ.get("MINICNN_NUM_THREADS", "1"))
    if numba is None:
        return 1
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def compute_threads():
    """Inside this block: BLAS single-threaded, Numba on ``num_threads()`` threads."""
    with threadpool_limits(limits=1, user_api="blas"):
        if numba is None:
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(num_threads())
        try:
            yield
        finally:
            numba.set_num_threads(before)
