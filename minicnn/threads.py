"""How many threads minicnn computes with, decided in one place.

Two thread pools live in one minicnn process: Numba's (the conv and pooling loops) and
the BLAS library's (the matrix products). They take turns, never run at once, but an
idle OpenBLAS thread keeps spinning for a while after each product and steals the core
a Numba thread needs next. On two cores that turns a 20 ms LeNet step into 100 ms.
minicnn therefore gives BLAS one thread while it trains or predicts (our matrix products
are small: the batch is the big dimension) and lets Numba use ``MINICNN_NUM_THREADS``
threads (default: Numba's own choice, one per core).

On a busy shared machine, ``MINICNN_NUM_THREADS=1`` is often fastest: a parallel loop
waits for its slowest thread, and a descheduled thread costs milliseconds.
"""
import contextlib
import os

from threadpoolctl import threadpool_limits

try:
    import numba
except ImportError:   # the NumPy kernels need no thread pool of their own
    numba = None


def set_num_threads(n):
    """Use ``n`` threads in the Numba kernels (at most the number Numba started with)."""
    if numba is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def get_num_threads():
    return numba.get_num_threads() if numba is not None else 1


@contextlib.contextmanager
def compute_threads():
    """Inside this block, BLAS runs single-threaded (see the module docstring)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


if os.environ.get("MINICNN_NUM_THREADS"):
    set_num_threads(os.environ["MINICNN_NUM_THREADS"])
