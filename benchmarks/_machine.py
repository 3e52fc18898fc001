"""What machine a benchmark ran on, and one switch for every thread pool.

``machine_info()`` returns a JSON-ready dict (CPU model, core count, library versions,
BLAS libraries and their thread counts via threadpoolctl, thread-related environment
variables). ``set_threads(n)`` caps BLAS, Numba and (if already imported) PyTorch at the
same number of threads, so comparisons are like for like and nothing oversubscribes.
"""
import os
import platform
import sys

from minicnn import threads

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "OPENBLAS_CORETYPE", "MINICNN_KERNELS")


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    keep = ("internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
    return [{k: pool.get(k) for k in keep} for pool in threadpool_info()]


def machine_info():
    """A dict describing this machine and the numeric stack, for benchmark JSON."""
    import numpy as np
    info = {
        "cpu": threads.cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": _blas_info(),
        "env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }
    try:
        import numba
        info.update(numba=numba.__version__, numba_threads=numba.get_num_threads(),
                    numba_threading_layer=_numba_layer(numba))
    except Exception as exc:  # noqa: BLE001 - an optional package; record why it is missing
        info["numba"] = f"unavailable: {exc}"
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def gpu_info():
    """The CUDA device CuPy sees (name, memory, versions), for a ``--device gpu`` run."""
    from kernels import backend
    if not backend.gpu_available():
        return None
    cupy = backend.cupy
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    return {"name": properties["name"].decode(), "memory_gib": properties["totalGlobalMem"] / 2**30,
            "cupy": cupy.__version__, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion()}


def _numba_layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:  # raised until a parallel kernel has run
        return "not yet chosen"


def set_threads(n):
    """Use ``n`` threads in BLAS, Numba and PyTorch; returns the threadpoolctl limiter."""
    limiter = None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=n)
    except ImportError:
        pass
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # noqa: BLE001
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return limiter
