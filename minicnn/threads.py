"""How many threads minicnn computes with, decided in one place.

Two thread pools live in one minicnn process: Numba's (the conv and pooling loops) and
the BLAS library's (the matrix products). They take turns and never run at once.

By default both use every core this process may run on (``os.sched_getaffinity``), as
Keras and PyTorch do. ``MINICNN_NUM_THREADS=n`` or ``set_num_threads(n)`` chooses another
count for both pools. While minicnn trains, evaluates or predicts (``compute_threads``),
the pools are set to that count and restored afterwards. Layers and kernels called
directly run with the pools as they are, which by default is the same count.

Two threads only pay when idle threads do not spin: ``kernels._threading`` makes
Numba's OpenMP threads wait passively (measured there). OpenBLAS decides by itself to
keep small matrix products on one thread.
"""
import contextlib
import os

from threadpoolctl import threadpool_limits

from kernels._threading import settle_wait_policy

try:
    import numba
except ImportError:   # the NumPy kernels need no thread pool of their own
    numba = None


_chosen = None   # set by set_num_threads; otherwise the environment decides


def set_num_threads(n):
    """Use ``n`` threads in minicnn's calls from now on (None: back to the default)."""
    global _chosen
    _chosen = None if n is None else _positive_count(n, "set_num_threads")


def _positive_count(value, where):
    """``value`` as an int >= 1 (an int, a NumPy integer or a string of digits), or an error."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{where} must be a whole number of threads >= 1, got {value!r}; "
                         f"this process may use {available_cores()} core(s)")
    return int(text)


def available_cores():
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def num_threads():
    """Threads for both pools: set_num_threads(n), else ``MINICNN_NUM_THREADS``, else
    every available core; at most the size of Numba's pool."""
    if _chosen is not None:
        wanted = _chosen
    elif os.environ.get("MINICNN_NUM_THREADS", "").strip():
        wanted = _positive_count(os.environ["MINICNN_NUM_THREADS"].strip(), "MINICNN_NUM_THREADS")
    else:
        wanted = available_cores()
    if numba is None:
        return wanted
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def compute_threads():
    """Inside this block: BLAS and Numba both on ``num_threads()`` threads."""
    count = num_threads()
    settle_wait_policy()
    with threadpool_limits(limits=count, user_api="blas"):
        if numba is None:
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(count)
        try:
            yield
        finally:
            numba.set_num_threads(before)
