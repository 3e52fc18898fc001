"""Thread policy: defaults from CPU affinity, overrides, clear errors, an untouched environment."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn import threads

ROOT = Path(__file__).resolve().parents[1]


def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MINICNN_NUM_THREADS")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_default_is_every_core_this_process_may_use(monkeypatch):
    monkeypatch.delenv("MINICNN_NUM_THREADS", raising=False)
    threads.set_num_threads(None)
    numba = pytest.importorskip("numba")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads.num_threads() == min(cores, numba.config.NUMBA_NUM_THREADS)


def test_environment_and_call_override(monkeypatch):
    monkeypatch.setenv("MINICNN_NUM_THREADS", "1")
    assert threads.num_threads() == 1
    threads.set_num_threads(1)
    monkeypatch.setenv("MINICNN_NUM_THREADS", "not used while set_num_threads holds")
    assert threads.num_threads() == 1
    threads.set_num_threads(None)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_bad_thread_counts_are_refused_clearly(monkeypatch, value):
    threads.set_num_threads(None)
    if value == "":
        monkeypatch.setenv("MINICNN_NUM_THREADS", value)   # empty means "not set"
        assert threads.num_threads() >= 1
        return
    monkeypatch.setenv("MINICNN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=r"MINICNN_NUM_THREADS must be a whole number of threads >= 1"):
        threads.num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads must be a whole number"):
        threads.set_num_threads(value)


def test_numpy_integers_are_thread_counts():
    np = pytest.importorskip("numpy")
    threads.set_num_threads(np.int64(1))
    assert threads.num_threads() == 1
    threads.set_num_threads(None)


def test_importing_leaves_the_environment_alone():
    code = ("import os; before = dict(os.environ); import minicnn, kernels, kernels.numba_kernels; "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    assert _python(code) == "[]"


def test_first_kernel_call_makes_openmp_wait_passively_unless_the_user_chose():
    pytest.importorskip("numba")
    code = ("import os, numpy as np, kernels; "
            "kernels.maxpool2d_forward(np.ones((1, 4, 4, 1)), (2, 2), (2, 2), 'valid'); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    assert _python(code, MINICNN_KERNELS="numba") == "PASSIVE"
    assert _python(code, MINICNN_KERNELS="numba", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
