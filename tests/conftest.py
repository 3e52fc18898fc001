"""Shared fixtures and the one place gradient-check tolerances live."""
import os
from pathlib import Path

import numpy as np
import pytest

# float64 central differences with h=1e-5 are good to ~1e-7 relative; a wrong
# backward is off by O(1), so these bounds separate the two with room to spare.
GRAD_RTOL = 1e-5
GRAD_ATOL = 1e-8


def assert_grad_close(analytic, numeric, what="dx"):
    """Compare two gradients and name the worst element when they differ."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    err = np.abs(analytic - numeric) - (GRAD_ATOL + GRAD_RTOL * np.abs(numeric))
    worst = np.unravel_index(np.argmax(err), err.shape) if err.size else ()
    np.testing.assert_allclose(
        analytic, numeric, rtol=GRAD_RTOL, atol=GRAD_ATOL,
        err_msg=f"{what}: worst index {worst}: analytic {analytic[worst]!r} vs numeric {numeric[worst]!r}")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def shared_data_dir():
    """The data folder from MINICNN_DATA, or None when it is not set or absent."""
    root = os.environ.get("MINICNN_DATA")
    return Path(root) if root and Path(root).is_dir() else None


@pytest.fixture
def data_dir():
    root = shared_data_dir()
    if root is None:
        pytest.skip("MINICNN_DATA is not set to a folder with the real data sets "
                    "(mnist/, fashion-mnist/, cifar-10-batches-py/: see tests/README.md)")
    return root


def predict_in_fresh_process(model_path, x, tmp_path):
    """Load a saved model in a new Python process and return its predictions for x."""
    import subprocess
    import sys
    np.save(tmp_path / "x.npy", x)
    script = (f"import numpy as np; from minicnn import load_model; "
              f"m = load_model(r'{model_path}'); "
              f"np.save(r'{tmp_path / 'p.npy'}', m.predict(np.load(r'{tmp_path / 'x.npy'}')))")
    subprocess.run([sys.executable, "-c", script], check=True)
    return np.load(tmp_path / "p.npy")


def _gpu_available():
    try:
        from kernels import backend
        return backend.gpu_available()
    except Exception:  # noqa: BLE001 - any failure to probe means "no GPU here"
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CuPy with a CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
