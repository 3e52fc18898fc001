"""How Numba's worker threads wait between parallel loops, settled once before the first.

Numba runs ``prange`` loops on GNU OpenMP here (``numba.threading_layer()`` says which
layer runs). Idle OpenMP threads spin by default, and on a machine with few cores they
steal the core that the BLAS threads need for the next matrix product, and the other way
round. Measured on a 2-core AMD EPYC, one Fashion-MNIST convnet training step with two
threads in each pool: 31 ms with passive waiting, 81 ms with spinning, 44 ms on one
thread. Numba's other portable layer, ``workqueue``, was slower still beside two BLAS
threads (160 ms).

GNU OpenMP takes its wait policy only from the environment, and reads it once, when
Numba first starts its thread pool. So the first kernel call or
``minicnn.threads.set_num_threads`` (whichever comes first; never ``import``) sets
``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy, and does so only if Numba's
pool has not started yet. This is the one place minicnn touches the environment.

``available_cores`` counts the cores this process may run on: the default thread count,
and the number the convolution's batch chunks are shared out evenly between.
"""
import os

_settled = False


def settle_wait_policy():
    """Before Numba's first parallel loop: passive OpenMP waits unless the user chose."""
    global _settled
    if _settled:
        return
    _settled = True
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return
    if getattr(parallel, "_is_initialized", False):
        return       # the pool already runs: the policy can no longer change
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores():
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS and Windows have no affinity call
        return os.cpu_count() or 1
