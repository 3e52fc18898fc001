"""Convolution and pooling kernels for minicnn, in three interchangeable implementations.

* ``naive``         — plain loops, the definitions (read these first).
* ``numpy_kernels`` — vectorised slice loops; also runs on CuPy arrays.
* ``numba_kernels`` — compiled loops + BLAS; used by default when Numba imports.

The functions below pick one implementation per call in ``_impl``. Set the environment
variable ``MINICNN_KERNELS`` to ``naive``, ``numpy`` or ``numba`` to force one (read on
every call). ``IMPLS`` maps those names to the modules, for tests and benchmarks.
This package never imports ``minicnn``.
"""
import os
import warnings

from . import backend, naive, numpy_kernels
from ._budget import get_im2col_budget, set_im2col_budget
from ._gemm import matmul, matmul_tn
from .numpy_kernels import bias_gradient
from ._allocator import keep_freed_memory
from ._threading import settle_wait_policy
from ._shapes import check_padding, output_size, pad_amounts

try:
    from . import numba_kernels
    HAVE_NUMBA = True
except Exception as exc:  # noqa: BLE001 - numba's NumPy-version check raises ImportError, but be safe
    numba_kernels = None
    HAVE_NUMBA = False
    warnings.warn(f"numba is unavailable ({type(exc).__name__}: {exc}); using the NumPy kernels",
                  RuntimeWarning, stacklevel=2)

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
           "check_padding", "output_size", "pad_amounts", "set_im2col_budget", "get_im2col_budget",
           "matmul", "matmul_tn", "bias_gradient", "IMPLS", "HAVE_NUMBA", "backend"]

IMPLS = {"naive": naive, "numpy": numpy_kernels}
if HAVE_NUMBA:
    IMPLS["numba"] = numba_kernels


def _impl(x):
    """The one place an implementation is chosen, for the array ``x`` about to be processed;
    the first call also settles the process-wide settings the kernels' speed depends on
    (OpenMP's wait policy, glibc's thresholds for freed memory)."""
    choice = os.environ.get("MINICNN_KERNELS", "").strip().lower()
    if choice and choice not in ("naive", "numpy", "numba"):
        raise ValueError(f"MINICNN_KERNELS must be 'naive', 'numpy' or 'numba', got {choice!r}")
    if backend.is_gpu(x):
        return numpy_kernels          # Numba and the naive loops only understand NumPy arrays
    if choice == "numba" and not HAVE_NUMBA:
        raise ValueError("MINICNN_KERNELS=numba but numba could not be imported")
    impl = IMPLS[choice] if choice else (numba_kernels if HAVE_NUMBA else numpy_kernels)
    if impl is numba_kernels:
        settle_wait_policy()
    keep_freed_memory()
    return impl


def compiled_twins(x):
    """numba_kernels when the Numba kernels are in use for ``x`` (its compiled twins of
    the batch-norm functions, of the Adam update and of bias + activation are then the
    ones to run), else None: use the NumPy references (``minicnn/layers/normalization.py``,
    ``minicnn/optimizers.py``, ``minicnn/layers/base.py``), which also run on CuPy arrays."""
    impl = _impl(x)
    return impl if impl is numba_kernels else None     # _impl never picks Numba without it


# Thin forwarders with the same signatures as the twins. Caches belong to the
# implementation that made them: keep MINICNN_KERNELS fixed between forward and backward.
def im2col(x, kh, kw, strides, padding):
    return _impl(x).im2col(x, kh, kw, strides, padding)


def col2im(col, x_shape, kh, kw, strides, padding):
    return _impl(col).col2im(col, x_shape, kh, kw, strides, padding)


def conv2d_forward(x, kernel, bias, strides, padding):
    return _impl(x).conv2d_forward(x, kernel, bias, strides, padding)


def conv2d_backward(dy, cache, need_dx=True):
    return _impl(dy).conv2d_backward(dy, cache, need_dx)


def maxpool2d_forward(x, pool_size, strides, padding):
    return _impl(x).maxpool2d_forward(x, pool_size, strides, padding)


def maxpool2d_backward(dy, cache):
    return _impl(dy).maxpool2d_backward(dy, cache)


def avgpool2d_forward(x, pool_size, strides, padding):
    return _impl(x).avgpool2d_forward(x, pool_size, strides, padding)


def avgpool2d_backward(dy, cache):
    return _impl(dy).avgpool2d_backward(dy, cache)


for _name in ("im2col", "col2im", "conv2d_forward", "conv2d_backward", "maxpool2d_forward",
              "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"):
    globals()[_name].__doc__ = getattr(naive, _name).__doc__  # learners see the real docs
del _name
