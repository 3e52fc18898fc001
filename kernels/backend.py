"""CPU/GPU switch: the only module in minicnn that imports CuPy.

Code that should run on both kinds of array starts with ``xp = get_array_module(x)`` and
then calls ``xp.*`` only. Without CuPy everything here quietly means NumPy; asking for
the GPU is what raises, never importing this module.
"""
import numpy as np

try:
    import cupy
    HAVE_CUPY = True
except Exception:  # noqa: BLE001 - a broken CUDA install must not break CPU users
    cupy = None
    HAVE_CUPY = False


def gpu_available():
    """True when CuPy imports *and* sees at least one CUDA device."""
    if not HAVE_CUPY:
        return False
    try:
        # `import cupy` succeeds on machines with no driver; only a device query tells.
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001
        return False


def is_gpu(x):
    """True when ``x`` is a CuPy array."""
    return HAVE_CUPY and isinstance(x, cupy.ndarray)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if HAVE_CUPY:
        return cupy.get_array_module(*arrays)
    return np


def to_numpy(x):
    """A NumPy array with the same values (copies from the GPU when needed)."""
    return cupy.asnumpy(x) if is_gpu(x) else np.asarray(x)


def to_device(x, device):
    """Move ``x`` to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy)."""
    check_device(device)
    return to_numpy(x) if device == "cpu" else cupy.asarray(x)


def check_device(device):
    """Raise, saying what is missing, unless ``device`` is "cpu" or a usable "gpu"."""
    if device == "cpu":
        return
    if device != "gpu":
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if not HAVE_CUPY:
        raise ImportError("CuPy is not installed; install the GPU extra with "
                          "`pip install minicnn[gpu]` (cupy-cuda12x, for CUDA 12 drivers) "
                          "or `pip install cupy-cuda13x` (CUDA 13); both need an NVIDIA GPU")
    if not gpu_available():
        raise RuntimeError("CuPy is installed but no CUDA device is visible "
                           "(check the driver and CUDA_VISIBLE_DEVICES)")
