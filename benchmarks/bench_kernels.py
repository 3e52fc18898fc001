"""Conv and pooling layer timings: our NumPy and Numba kernels against PyTorch's CPU ops.

    for impl in numpy numba torch; do
        BENCH_IMPLS=$impl pytest benchmarks/bench_kernels.py --benchmark-json results/bench_$impl.json
    done
    python benchmarks/report_kernels.py results/bench_*.json --out results/bench_kernels

Shapes are the layers of the course's notebooks (LeNet-5, the Fashion-MNIST convnet, the
AlexNet-like CIFAR net) at their batch sizes, float32, NHWC. Threads: BENCH_THREADS
(default 2) for BLAS, Numba and PyTorch alike. The first call of each case (Numba
compilation or cache load) is timed separately into ``extra_info["first_call_s"]`` and
kept out of the statistics; PyTorch gets NCHW tensors made outside the timed region.
"""
import os
import time

import numpy as np
import pytest

import kernels
from kernels._shapes import inside_cells

# name: (x shape NHWC, what, strides, padding); what is a conv kernel (kh, kw, C_in, C_out)
# or a pooling window ("max" or "avg", (ph, pw)). Every conv and pool layer of the notebooks.
SHAPES = {
    "lenet_conv1_b64": ((64, 28, 28, 1), (5, 5, 1, 6), (1, 1), "valid"),
    "lenet_pool1_b64": ((64, 24, 24, 6), ("avg", (2, 2)), (2, 2), "valid"),
    "lenet_conv2_b64": ((64, 12, 12, 6), (5, 5, 6, 16), (1, 1), "valid"),
    "lenet_pool2_b64": ((64, 8, 8, 16), ("avg", (2, 2)), (2, 2), "valid"),
    "lenet_conv3_b64": ((64, 4, 4, 16), (5, 5, 16, 120), (1, 1), "same"),
    "fashion_conv1_b128": ((128, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid"),
    "maxpool2x2_b128": ((128, 26, 26, 32), ("max", (2, 2)), (2, 2), "valid"),
    "fashion_conv2_b128": ((128, 13, 13, 32), (3, 3, 32, 64), (1, 1), "valid"),
    "fashion_pool2_b128": ((128, 11, 11, 64), ("max", (2, 2)), (2, 2), "valid"),
    "model2_conv1_b128": ((128, 28, 28, 1), (3, 3, 1, 32), (1, 1), "same"),
    "model2_pool1_b128": ((128, 28, 28, 32), ("max", (2, 2)), (2, 2), "valid"),
    "model2_conv2_b128": ((128, 14, 14, 32), (3, 3, 32, 64), (1, 1), "same"),
    "model2_pool2_b128": ((128, 14, 14, 64), ("max", (2, 2)), (2, 2), "valid"),
    "model2_conv3_b128": ((128, 7, 7, 64), (3, 3, 64, 128), (1, 1), "valid"),
    "alex_conv1_b64": ((64, 32, 32, 3), (11, 11, 3, 96), (4, 4), "same"),
    "alex_pool1_b64": ((64, 8, 8, 96), ("max", (3, 3)), (2, 2), "same"),
    "alex_conv2_b64": ((64, 4, 4, 96), (5, 5, 96, 256), (1, 1), "same"),
    "alex_pool2_b64": ((64, 4, 4, 256), ("max", (3, 3)), (2, 2), "same"),
    "alex_conv3_b64": ((64, 2, 2, 256), (3, 3, 256, 384), (1, 1), "same"),
    "alex_conv4_b64": ((64, 2, 2, 384), (3, 3, 384, 384), (1, 1), "same"),
    "alex_conv5_b64": ((64, 2, 2, 384), (3, 3, 384, 256), (1, 1), "same"),
    "alex_pool3_b64": ((64, 2, 2, 256), ("max", (3, 3)), (2, 2), "same"),
}


def is_pool(what):
    return isinstance(what[0], str)


# BENCH_IMPLS=numba runs one implementation per process: thread pools of different
# libraries (Numba's OpenMP, PyTorch's, OpenBLAS) idle-spin and steal each other's cores.
WANTED = os.environ.get("BENCH_IMPLS", "numpy,numba,torch").split(",")
torch = None
if "torch" in WANTED:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
IMPL_NAMES = [n for n in ("numpy", "numba") if n in kernels.IMPLS and n in WANTED] + (["torch"] if torch else [])


def flops(name, mode):
    """GEMM-equivalent floating-point operations (2 per multiply-add; backward has twice the
    forward's), counting window cells inside the image only, as ``model.trace`` does."""
    x_shape, k_shape, strides, padding = SHAPES[name]
    if is_pool(k_shape):
        return 0
    kh, kw, C_in, C_out = k_shape
    one = 2 * x_shape[0] * inside_cells(x_shape, kh, kw, strides, padding) * C_in * C_out
    return one if mode == "fwd" else 3 * one


def _ours(mod, name, mode, rng):
    """A zero-argument callable running our kernel for one case."""
    x_shape, k_shape, strides, padding = SHAPES[name]
    x = rng.standard_normal(x_shape, dtype=np.float32)
    if is_pool(k_shape):
        kind, window = k_shape
        forward = getattr(mod, f"{kind}pool2d_forward")
        fwd = lambda: forward(x, window, strides, padding)  # noqa: E731
        bwd = getattr(mod, f"{kind}pool2d_backward")
    else:
        kern = rng.standard_normal(k_shape, dtype=np.float32) * 0.1
        bias = np.zeros(k_shape[3], np.float32)
        fwd = lambda: mod.conv2d_forward(x, kern, bias, strides, padding)  # noqa: E731
        bwd = mod.conv2d_backward
    if mode == "fwd":
        return fwd
    dy = rng.standard_normal(fwd()[0].shape, dtype=np.float32)
    return lambda: bwd(dy, fwd()[1])


def _torch_pad(n, k, s, padding):
    before, after = kernels.pad_amounts(n, k, s, padding)
    return before, after


def _torch(name, mode, rng):
    """The same case in PyTorch (NCHW, tensors built here, outside the timed region)."""
    x_shape, k_shape, strides, padding = SHAPES[name]
    x = torch.from_numpy(rng.standard_normal(x_shape, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    if is_pool(k_shape):
        kind, (ph, pw) = k_shape
        (pt, pb), (pl, pr) = (_torch_pad(x_shape[1], ph, strides[0], padding),
                              _torch_pad(x_shape[2], pw, strides[1], padding))
        if kind == "max":      # padded cells never win: pad with -inf
            op = lambda t: F.max_pool2d(F.pad(t, (pl, pr, pt, pb), value=-np.inf), (ph, pw), strides)  # noqa: E731
        elif any((pt, pb, pl, pr)):
            raise NotImplementedError("average pooling with 'same' padding (Keras divides by real cells)")
        else:
            op = lambda t: F.avg_pool2d(t, (ph, pw), strides)  # noqa: E731
        params = []
    else:
        kh, kw, _, C_out = k_shape
        w = torch.from_numpy(rng.standard_normal(k_shape, dtype=np.float32) * 0.1).permute(3, 2, 0, 1).contiguous()
        b = torch.zeros(C_out)
        # TensorFlow's "same" can pad unevenly; F.pad states both sides explicitly.
        (pt, pb), (pl, pr) = (_torch_pad(x_shape[1], kh, strides[0], padding),
                              _torch_pad(x_shape[2], kw, strides[1], padding))
        pads = (pl, pr, pt, pb)
        op = lambda t: F.conv2d(F.pad(t, pads) if any(pads) else t, w, b, strides)  # noqa: E731
        params = [w, b]
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return op(x)
        return run
    x.requires_grad_(True)
    for p in params:
        p.requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal(tuple(op(x).shape), dtype=np.float32))

    def run():
        for t in [x] + params:
            t.grad = None
        op(x).backward(dy)
    return run


@pytest.mark.parametrize("impl", IMPL_NAMES)
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_layer(benchmark, shape, mode, impl):
    rng = np.random.default_rng(0)
    fn = _torch(shape, mode, rng) if impl == "torch" else _ours(kernels.IMPLS[impl], shape, mode, rng)
    benchmark.group = f"{shape}-{mode}"
    start = time.perf_counter()
    fn()                                   # compile (or load from cache), touch memory
    first = time.perf_counter() - start
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    benchmark.extra_info.update(shape=shape, mode=mode, impl=impl, dtype="float32",
                                first_call_s=first, gflop=flops(shape, mode) / 1e9)
    rounds = int(min(200, max(5, 0.6 / max(once, 1e-6))))
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
