"""kernels/_allocator.py: freed batch-sized arrays stay in the process (glibc only)."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import _allocator

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Frees a touched 16 MB array and prints how many kB the process gave back to the kernel.
FREED_KB = """
import numpy as np
from minicnn.threads import compute_threads
def rss_kb():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
def returned_kb():
    a = np.ones(4 << 20, dtype=np.float32)
    before = rss_kb()
    del a
    return before - rss_kb()
if {setup!r} == "fit":
    with compute_threads():
        print(returned_kb())
else:
    if {setup!r} == "kernel":
        import kernels
        kernels.im2col(np.ones((1, 3, 3, 1), np.float32), 2, 2, (1, 1), "valid")
    print(returned_kb())
"""


def _returned_kb(setup, **env):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env}
    out = subprocess.run([sys.executable, "-c", FREED_KB.format(setup=setup)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout
    return int(out)


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_training_and_kernels_keep_freed_arrays_for_the_next_batch():
    assert _returned_kb("nothing") > 15_000      # glibc's default: unmapped at once
    assert _returned_kb("fit") < 1_000           # inside fit: kept for reuse
    assert _returned_kb("kernel") < 1_000        # after a kernel called directly, too


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_glibc_variables_set_by_the_user_win():
    assert _returned_kb("fit", MALLOC_MMAP_THRESHOLD_="131072") > 15_000


def test_thresholds_are_set_once(monkeypatch):
    monkeypatch.setattr(_allocator, "_settled", False)
    assert _allocator.keep_freed_memory(environ={"MALLOC_TRIM_THRESHOLD_": "1"}) is False
    assert _allocator.keep_freed_memory(environ={}) is False        # settled by the first call
