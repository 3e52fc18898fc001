"""Benchmark session setup: thread caps and machine details in the saved JSON."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # so `_machine` imports from here

import _machine  # noqa: E402
from kernels._allocator import keep_freed_memory  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", "2"))

# minicnn's own policy (kernels/_threading.py), for every library, as train_speed.py does:
# set_threads below starts Numba's and PyTorch's OpenMP pools, which read it only then.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config):
    if "torch" in os.environ.get("BENCH_IMPLS", "torch"):
        try:
            import torch  # noqa: F401 - imported before set_threads so its pool is capped too
        except ImportError:
            pass
    config._minicnn_limiter = _machine.set_threads(THREADS)   # keep the limiter alive
    # The kernels are called here as module functions, past the entry point that settles
    # glibc's thresholds for freed memory (kernels/_allocator.py): settle them for every
    # library alike, or each call page-faults its col matrix in (Fashion conv2: 18 vs 14 ms).
    keep_freed_memory()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["minicnn"] = dict(_machine.machine_info(), bench_threads=THREADS)
