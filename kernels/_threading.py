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
and the number ``even_chunks`` shares a convolution's batch chunks out between.
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


def even_chunks(N, step):
    """``[(start, stop), ...]``: the batch of ``N`` images in chunks of at most ``step``,
    as many chunks as a multiple of the cores this process may use (when there are more
    than one), their sizes differing by one image at most. Threads take chunks in turn,
    so 9 chunks on 2 threads would leave one thread a chunk to do alone at the end (5
    against 4). The cores, not the threads of this call, so that the chunks, and the
    order of the weight gradient's sums, stay the same at any thread count. Measured on
    the im2col path (before these layers went through Winograd), 2 threads, batch 128,
    forward + backward, best of four alternating runs, twice: Fashion conv2, 9 chunks of
    15 images -> 10 of 13, 11.9 -> 11.5 and 12.5 -> 11.9 ms; model 2's conv2, 15 chunks of
    9 -> 16 of 8, within the noise (18.4 -> 18.1, 18.6 -> 18.8)."""
    chunks = -(-N // step)
    if chunks > 1:
        cores = available_cores()
        chunks = min(N, -(-chunks // cores) * cores)
    edges = [N * i // chunks for i in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))
