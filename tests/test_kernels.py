"""Every kernel implementation against the naive loops, plus gradient and dispatch checks."""
import inspect
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_grad_close

import kernels
from kernels import _budget, naive, output_size, pad_amounts
from minicnn.gradcheck import numerical_grad

FAST = {k: v for k, v in kernels.IMPLS.items() if k != "naive"}
ROOT = Path(__file__).resolve().parents[1]
TIGHT = dict(rtol=1e-10, atol=1e-12)   # float64, same math, only the summation order differs


def _conv_cases():
    """Kernels x strides x padding, with batch, size parity and C_in cycling through."""
    kernels_ = [(1, 1), (2, 3), (3, 3), (5, 5), (11, 11)]
    strides = [(1, 1), (2, 2), (1, 2), (3, 1), (4, 4)]
    for k, ((kh, kw), s, pad) in enumerate(itertools.product(kernels_, strides, ["valid", "same"])):
        N, C_in, C_out = 1 + k % 3, (1, 3, 5)[k % 3], 1 + k % 4
        H, W = kh + 2 + k % 2, kw + 3 + (k // 2) % 2   # odd and even sizes
        yield pytest.param((N, H, W, C_in), (kh, kw, C_in, C_out), s, pad,
                           id=f"x{N}x{H}x{W}x{C_in}-k{kh}x{kw}x{C_out}-s{s[0]}{s[1]}-{pad}")


POOL_CASES = [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((2, 3), (1, 2)), ((3, 3), (1, 1)), ((3, 2), (3, 3))]
POOLS = ["maxpool2d", "avgpool2d"]


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, err_msg=what, **TIGHT)


@pytest.mark.parametrize("impl", sorted(FAST))
@pytest.mark.parametrize("x_shape, k_shape, strides, padding", list(_conv_cases()))
def test_conv_matches_naive(impl, x_shape, k_shape, strides, padding, rng):
    mod = kernels.IMPLS[impl]
    x, kern = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    bias = rng.standard_normal(k_shape[3])
    y_ref, cache_ref = naive.conv2d_forward(x, kern, bias, strides, padding)
    y, cache = mod.conv2d_forward(x, kern, bias, strides, padding)
    _close(y, y_ref, "y")
    dy = rng.standard_normal(y.shape)
    for name, got, want in zip(("dx", "dkernel", "dbias"), mod.conv2d_backward(dy, cache),
                               naive.conv2d_backward(dy, cache_ref)):
        _close(got, want, name)
    col = mod.im2col(x, k_shape[0], k_shape[1], strides, padding)
    _close(col, naive.im2col(x, k_shape[0], k_shape[1], strides, padding), "col")
    _close(mod.col2im(col, x_shape, k_shape[0], k_shape[1], strides, padding),
           naive.col2im(col, x_shape, k_shape[0], k_shape[1], strides, padding), "col2im")


@pytest.mark.parametrize("impl", sorted(FAST))
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size, strides", POOL_CASES)
@pytest.mark.parametrize("x_shape", [(2, 7, 6, 3), (1, 8, 9, 2)])
def test_pool_matches_naive(impl, pool, padding, size, strides, x_shape, rng):
    mod = kernels.IMPLS[impl]
    x = rng.standard_normal(x_shape)
    y_ref, cache_ref = getattr(naive, pool + "_forward")(x, size, strides, padding)
    y, cache = getattr(mod, pool + "_forward")(x, size, strides, padding)
    _close(y, y_ref, "y")
    dy = rng.standard_normal(y.shape)
    _close(getattr(mod, pool + "_backward")(dy, cache),
           getattr(naive, pool + "_backward")(dy, cache_ref), "dx")


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
@pytest.mark.parametrize("make_x", [lambda rng, s: np.ones(s),
                                    lambda rng, s: rng.integers(0, 3, s).astype(float)],
                         ids=["all-equal", "few-values"])
@pytest.mark.parametrize("size, strides", POOL_CASES)
def test_maxpool_ties_go_to_first_max(impl, make_x, size, strides, rng):
    mod = kernels.IMPLS[impl]
    x = make_x(rng, (2, 7, 8, 3))
    for padding in ("valid", "same"):
        y, cache = mod.maxpool2d_forward(x, size, strides, padding)
        dy = rng.standard_normal(y.shape)
        dx = mod.maxpool2d_backward(dy, cache)
        # One winner per window, so the gradient total is conserved ...
        np.testing.assert_allclose(dx.sum(), dy.sum())
        # ... and it is the same winner as the definition picks.
        _close(dx, naive.maxpool2d_backward(dy, naive.maxpool2d_forward(x, size, strides, padding)[1]), "dx")


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
def test_maxpool_all_equal_window_picks_top_left(impl):
    x = np.ones((1, 4, 6, 2))
    y, cache = kernels.IMPLS[impl].maxpool2d_forward(x, (2, 3), (2, 3), "valid")
    dx = kernels.IMPLS[impl].maxpool2d_backward(np.ones_like(y), cache)
    expected = np.zeros_like(x)
    expected[:, ::2, ::3] = 1
    np.testing.assert_array_equal(dx, expected)


# ---------------------------------------------------------------- finite differences

GRAD_CASES = [((1, 1), "valid"), ((1, 1), "same"), ((2, 2), "valid"), ((2, 2), "same")]


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
@pytest.mark.parametrize("strides, padding", GRAD_CASES)
@pytest.mark.parametrize("C_in", [1, 2])
def test_conv_gradients(impl, strides, padding, C_in, rng):
    mod = kernels.IMPLS[impl]
    x = rng.standard_normal((2, 5, 6, C_in))
    kern, bias = rng.standard_normal((3, 2, C_in, 2)), rng.standard_normal(2)
    y, cache = mod.conv2d_forward(x, kern, bias, strides, padding)
    dy = rng.standard_normal(y.shape)
    dx, dk, db = mod.conv2d_backward(dy, cache)
    loss = lambda: float(np.sum(mod.conv2d_forward(x, kern, bias, strides, padding)[0] * dy))  # noqa: E731
    assert_grad_close(dx, numerical_grad(loss, x))
    assert_grad_close(dk, numerical_grad(loss, kern), what="dkernel")
    assert_grad_close(db, numerical_grad(loss, bias), what="dbias")


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("strides, padding", GRAD_CASES)
def test_pool_gradients(impl, pool, strides, padding, rng):
    mod = kernels.IMPLS[impl]
    forward, backward = getattr(mod, pool + "_forward"), getattr(mod, pool + "_backward")
    # Distinct values far apart: a 1e-5 nudge can never change which cell is the max.
    x = rng.permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2) * 0.1 + rng.uniform(0, 0.01, (2, 5, 6, 2))
    y, cache = forward(x, (3, 2), strides, padding)
    dy = rng.standard_normal(y.shape)
    dx = backward(dy, cache)
    assert_grad_close(dx, numerical_grad(lambda: float(np.sum(forward(x, (3, 2), strides, padding)[0] * dy)), x))


# ---------------------------------------------------------------- dtypes, mutation, signatures

def _all_calls(mod, x, rng):
    """(name, forward result, backward result) for every layer function of ``mod``."""
    kern, bias = rng.standard_normal((3, 3, x.shape[3], 4)).astype(x.dtype), np.ones(4, x.dtype)
    out = []
    y, cache = mod.conv2d_forward(x, kern, bias, (1, 1), "same")
    out.append(("conv2d", y, mod.conv2d_backward(np.ones_like(y), cache)))
    for pool in POOLS:
        y, cache = getattr(mod, pool + "_forward")(x, (2, 2), (2, 2), "same")
        out.append((pool, y, (getattr(mod, pool + "_backward")(np.ones_like(y), cache),)))
    return out


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
@pytest.mark.parametrize("C_in", [1, 3])
def test_float32_stays_float32(impl, C_in, rng):
    mod = kernels.IMPLS[impl]
    x = rng.standard_normal((2, 5, 5, C_in)).astype(np.float32)
    for name, y, grads in _all_calls(mod, x, rng):
        assert y.dtype == np.float32, name
        assert all(g.dtype == np.float32 for g in grads), name
    assert mod.im2col(x, 3, 3, (1, 1), "same").dtype == np.float32


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
def test_backward_does_not_mutate_dy(impl, rng):
    mod = kernels.IMPLS[impl]
    x = rng.standard_normal((2, 6, 6, 2))
    calls = [(mod.conv2d_forward(x, rng.standard_normal((3, 3, 2, 3)), np.zeros(3), (2, 1), "same"),
              mod.conv2d_backward)]
    for pool in POOLS:
        calls.append((getattr(mod, pool + "_forward")(x, (3, 3), (2, 2), "same"),
                      getattr(mod, pool + "_backward")))
    for (y, cache), backward in calls:
        dy = rng.standard_normal(y.shape)
        before = dy.copy()
        backward(dy, cache)
        np.testing.assert_array_equal(dy, before)


def test_twins_share_names_and_signatures():
    names = naive.__all__
    for impl, mod in kernels.IMPLS.items():
        assert mod.__all__ == names, impl
        for name in names:
            assert inspect.signature(getattr(mod, name)) == inspect.signature(getattr(naive, name)), \
                f"{impl}.{name}"
            assert inspect.signature(getattr(kernels, name)) == inspect.signature(getattr(naive, name))


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("n, k, s, out, pads", [
    (7, 3, 2, 4, (1, 1)), (6, 3, 2, 3, (0, 1)), (5, 5, 1, 5, (2, 2)), (28, 5, 1, 28, (2, 2)),
    (32, 11, 4, 8, (3, 4)), (8, 3, 2, 4, (0, 1)), (4, 1, 2, 2, (0, 0)), (5, 2, 3, 2, (0, 0))])
def test_same_padding_follows_tensorflow(n, k, s, out, pads):
    assert output_size(n, k, s, "same") == out
    assert pad_amounts(n, k, s, "same") == pads


def test_valid_sizes_and_errors():
    assert output_size(28, 5, 1, "valid") == 24 and pad_amounts(28, 5, 1, "valid") == (0, 0)
    assert output_size(7, 3, 2, "valid") == 3
    with pytest.raises(ValueError, match="padding"):
        output_size(7, 3, 1, "full")
    with pytest.raises(ValueError, match="larger than the input"):
        output_size(3, 5, 1, "valid")
    with pytest.raises(ValueError, match="larger than the input"):
        kernels.conv2d_forward(np.zeros((1, 3, 3, 1)), np.zeros((5, 5, 1, 1)), None, (1, 1), "valid")


# ---------------------------------------------------------------- dispatch and imports

def test_env_override_picks_implementation(monkeypatch):
    x = np.zeros((1, 4, 4, 1))
    for name, mod in kernels.IMPLS.items():
        monkeypatch.setenv("MINICNN_KERNELS", name)
        assert kernels._impl(x) is mod
    monkeypatch.delenv("MINICNN_KERNELS")
    assert kernels._impl(x) is (kernels.IMPLS["numba"] if kernels.HAVE_NUMBA else kernels.numpy_kernels)
    monkeypatch.setenv("MINICNN_KERNELS", "fortran")
    with pytest.raises(ValueError, match="MINICNN_KERNELS"):
        kernels.conv2d_forward(x, np.zeros((1, 1, 1, 1)), None, (1, 1), "valid")


def test_dispatch_runs_end_to_end(monkeypatch, rng):
    x, kern = rng.standard_normal((2, 6, 6, 2)), rng.standard_normal((3, 3, 2, 2))
    results = {}
    for name in kernels.IMPLS:
        monkeypatch.setenv("MINICNN_KERNELS", name)
        y, cache = kernels.conv2d_forward(x, kern, None, (1, 1), "same")
        dx, dk, db = kernels.conv2d_backward(np.ones_like(y), cache)
        assert db is None
        results[name] = (y, dx, dk)
    for name, arrays in results.items():
        for got, want in zip(arrays, results["naive"]):
            _close(got, want, name)


def _run(code, **env):
    import os
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, check=True)


def test_kernels_never_import_minicnn():
    _run("import sys, kernels; bad = [m for m in sys.modules if m.split('.')[0] == 'minicnn']; "
         "assert not bad, bad")
    for path in (ROOT / "kernels").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+minicnn", path.read_text(), re.M), path


def test_only_backend_imports_cupy():
    offenders = [p for d in ("minicnn", "kernels") for p in (ROOT / d).rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+cupy", p.read_text(), re.M)]
    assert [p.relative_to(ROOT).as_posix() for p in offenders] == ["kernels/backend.py"]


def test_missing_numba_falls_back_with_one_warning():
    # sys.modules[name] = None makes `import numba` raise ImportError, as a NumPy clash does.
    out = _run("import sys, warnings; sys.modules['numba'] = None\n"
               "with warnings.catch_warnings(record=True) as w:\n"
               "    warnings.simplefilter('always'); import kernels; import kernels.naive\n"
               "assert not kernels.HAVE_NUMBA and 'numba' not in kernels.IMPLS\n"
               "import numpy as np; assert kernels._impl(np.zeros(1)) is kernels.numpy_kernels\n"
               "print(len(w), w[0].message)")
    count, message = out.stdout.split(" ", 1)
    assert count == "1" and "NumPy kernels" in message


def test_backend_without_gpu():
    from kernels import backend
    x = np.arange(3.0)
    assert backend.get_array_module(x) is np and not backend.is_gpu(x)
    assert backend.to_device(x, "cpu") is x or np.array_equal(backend.to_device(x, "cpu"), x)
    with pytest.raises(ValueError):
        backend.to_device(x, "tpu")
    if not backend.gpu_available():
        with pytest.raises((ImportError, RuntimeError), match="minicnn\\[gpu\\]|CUDA"):
            backend.to_device(x, "gpu")


# ---------------------------------------------------------------- memory budget, numba cache

@pytest.mark.parametrize("impl", sorted(FAST))
def test_im2col_budget_chunks_the_batch(impl, rng):
    mod = kernels.IMPLS[impl]
    x, kern, bias = rng.standard_normal((7, 9, 8, 3)), rng.standard_normal((3, 3, 3, 4)), np.ones(4)
    y_ref, cache_ref = naive.conv2d_forward(x, kern, bias, (1, 1), "same")
    dy = rng.standard_normal(y_ref.shape)
    one_image = 9 * 8 * 3 * 3 * 3 * x.itemsize             # col bytes for a single image
    budget = 2 * one_image + 1                               # room for two images, not seven
    try:
        kernels.set_im2col_budget(budget)
        assert kernels.get_im2col_budget() == budget
        _budget.reset_peak()
        y, cache = mod.conv2d_forward(x, kern, bias, (1, 1), "same")
        grads = mod.conv2d_backward(dy, cache)
        assert 0 < _budget.peak_col_bytes <= budget
        assert cache[-1] is None                             # the col of a chunked batch is not kept
    finally:
        kernels.set_im2col_budget(None)
    _close(y, y_ref, "y")
    for got, want in zip(grads, naive.conv2d_backward(dy, cache_ref)):
        _close(got, want, "grad")


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("need_dx", [True, False])
def test_numba_conv_chunks_on_two_threads_give_one_threads_result(need_dx, monkeypatch, rng):
    """A batch cut into cache-sized chunks, the chunks shared by two threads: the naive
    result, and bit for bit what one thread computes."""
    import numba
    from kernels import numba_kernels
    x, kern, bias = rng.standard_normal((7, 9, 8, 3)), rng.standard_normal((3, 3, 3, 4)), np.ones(4)
    monkeypatch.setattr(numba_kernels, "CHUNK_BYTES", 2 * 9 * 8 * 27 * x.itemsize)   # 2 images
    monkeypatch.setattr(numba_kernels, "MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(numba_kernels, "WHOLE_BATCH_BYTES", 0)
    threads_used = []
    run_chunks = numba_kernels.run_chunks
    monkeypatch.setattr(numba_kernels, "run_chunks",
                        lambda work, chunks, threads: threads_used.append(threads) or run_chunks(work, chunks, threads))
    y_ref, cache_ref = naive.conv2d_forward(x, kern, bias, (1, 1), "same")
    dy = rng.standard_normal(y_ref.shape)
    results, before = {}, numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, cache = numba_kernels.conv2d_forward(x, kern, bias, (1, 1), "same")
            assert cache[-1] is None                       # chunked: no col kept
            results[threads] = (y, *numba_kernels.conv2d_backward(dy, cache, need_dx))
    finally:
        numba.set_num_threads(before)
    assert threads_used == [1, 1, 2, 2]
    for one, two in zip(results[1], results[2]):
        if one is None:
            assert two is None and not need_dx
            continue
        np.testing.assert_array_equal(one, two)
    want = (y_ref, *naive.conv2d_backward(dy, cache_ref))
    for got, expected in zip(results[2], want):
        if got is not None:
            _close(got, expected, "chunked conv")

@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("cores", [1, 2, 3, 8])
def test_numba_conv_chunks_share_out_evenly_between_the_cores(cores, monkeypatch):
    """Fashion conv2's batch of 128 (15 images fill a 2 MiB chunk): as many chunks as a
    multiple of the cores, differing by one image at most, the same at any thread count."""
    import numba
    from kernels import _threading, numba_kernels
    monkeypatch.setattr(_threading, "available_cores", lambda: cores)
    seen, before = [], numba.get_num_threads()
    try:
        for threads in {1, min(2, numba.config.NUMBA_NUM_THREADS)}:
            numba.set_num_threads(threads)
            seen.append(numba_kernels._chunks((128, 13, 13, 32), (3, 3, 32, 64), (1, 1), "valid", 4)[0])
    finally:
        numba.set_num_threads(before)
    chunks = seen[0]
    assert all(other == chunks for other in seen)
    sizes = [hi - lo for lo, hi in chunks]
    assert chunks[0][0] == 0 and chunks[-1][1] == 128 and all(
        a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert len(chunks) % cores == 0 and max(sizes) <= 15 and max(sizes) - min(sizes) <= 1


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x_shape, k_shape, strides", [
    ((5, 4, 4, 3), (5, 5, 3, 4), (1, 1)),         # LeNet conv3's geometry
    ((4, 2, 2, 5), (3, 3, 5, 6), (1, 1)),         # AlexNet conv3-5's
    ((3, 5, 4, 2), (4, 3, 2, 3), (2, 1)),         # strided, even window
    ((2, 3, 6, 1), (2, 5, 1, 2), (1, 3)),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_by_output_position_matches_naive(x_shape, k_shape, strides, threads, monkeypatch, rng):
    """Small padded images go one output position at a time (numba_kernels picks it by
    shape): the naive y, dx, dkernel and dbias, the positions on one thread or shared out."""
    import numba
    from kernels import _per_position, numba_kernels
    monkeypatch.setattr(_per_position, "MIN_PIECE_FLOPS_PER_THREAD", 1)
    blocks = []
    run_chunks = _per_position.run_chunks
    monkeypatch.setattr(_per_position, "run_chunks",
                        lambda work, chunks, n: blocks.append(len(chunks)) or run_chunks(work, chunks, n))
    x, kern, bias = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(k_shape[3])
    y_ref, cache_ref = naive.conv2d_forward(x, kern, bias, strides, "same")
    dy = rng.standard_normal(y_ref.shape)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(threads)
        assert _per_position.worth_it(x_shape, k_shape, strides, "same")
        y, cache = numba_kernels.conv2d_forward(x, kern, bias, strides, "same")
        got = (y, *numba_kernels.conv2d_backward(dy, cache))
        no_dx, dkernel_alone, _ = numba_kernels.conv2d_backward(dy, cache, need_dx=False)
    finally:
        numba.set_num_threads(before)
    assert blocks == [threads, threads, threads]
    for name, value, want in zip(("y", "dx", "dkernel", "dbias"), got,
                                 (y_ref, *naive.conv2d_backward(dy, cache_ref))):
        _close(value, want, name)
    assert no_dx is None
    np.testing.assert_array_equal(dkernel_alone, got[2])      # the same sums without dx


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_by_output_position_only_where_padding_dominates(threads, monkeypatch):
    """The notebooks' layers that take the per-position path, and some that must not; on
    two threads LeNet conv3's small products stay with im2col, which splits its product."""
    from kernels import _per_position
    monkeypatch.setattr(_per_position, "_available_threads", lambda: threads)
    worth_it, one = _per_position.worth_it, (1, 1)
    assert worth_it((64, 4, 4, 16), (5, 5, 16, 120), one, "same") == (threads == 1)   # LeNet conv3
    assert worth_it((64, 4, 4, 96), (5, 5, 96, 256), one, "same")           # AlexNet conv2
    assert worth_it((64, 2, 2, 384), (3, 3, 384, 384), one, "same")         # AlexNet conv4
    assert not worth_it((64, 8, 8, 16), (5, 5, 16, 120), one, "valid")      # no padding
    assert not worth_it((128, 28, 28, 1), (3, 3, 1, 32), one, "same")       # many positions
    assert not worth_it((64, 32, 32, 3), (11, 11, 3, 96), (4, 4), "same")   # AlexNet conv1: 64


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x_shape, C_out, padding", [
    ((3, 13, 13, 32), 64, "valid"),      # Fashion conv2's geometry: 11x11 out of 6x6 tiles
    ((2, 14, 14, 32), 16, "same"),       # model 2's conv2: 7x7 tiles exactly
    ((3, 9, 10, 16), 24, "same"),        # odd height, even width
    ((2, 6, 9, 17), 16, "valid"),        # odd channel count, 4x7 out
    ((5, 4, 4, 16), 16, "same"),         # one 2x2 tile in each corner
])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_conv_matches_naive(x_shape, C_out, padding, need_dx, threads, monkeypatch, rng):
    """3x3 convolutions at stride 1 with many channels go through Winograd's F(2x2, 3x3)
    (numba_kernels picks it by shape): the naive y, dx, dkernel and dbias in float64,
    in blocks of one or two images, on one thread or two."""
    import numba
    from kernels import _winograd, numba_kernels
    monkeypatch.setattr(_winograd, "BLOCK_BYTES", 1)          # one image per block
    k_shape = (3, 3, x_shape[3], C_out)
    assert _winograd.worth_it(x_shape, k_shape, (1, 1), padding)
    x, kern, bias = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(C_out)
    y_ref, cache_ref = naive.conv2d_forward(x, kern, bias, (1, 1), padding)
    dy = rng.standard_normal(y_ref.shape)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(threads)
        y, cache = numba_kernels.conv2d_forward(x, kern, bias, (1, 1), padding)
        got = (y, *numba_kernels.conv2d_backward(dy, cache, need_dx))
    finally:
        numba.set_num_threads(before)
    for name, value, want in zip(("y", "dx", "dkernel", "dbias"), got,
                                 (y_ref, *naive.conv2d_backward(dy, cache_ref))):
        if name == "dx" and not need_dx:
            assert value is None
        else:
            _close(value, want, name)


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_winograd_in_float32_and_at_any_thread_count(monkeypatch, rng):
    """float32: within float32 rounding of the float64 naive result (the transforms add
    and subtract before multiplying); and bit for bit the same on one thread and two."""
    import numba
    from kernels import _winograd
    monkeypatch.setattr(_winograd, "BLOCK_BYTES", 1)
    x = rng.standard_normal((6, 13, 13, 32))
    kern = rng.standard_normal((3, 3, 32, 64)) / 17
    y_ref, cache_ref = naive.conv2d_forward(x, kern, None, (1, 1), "valid")
    dy = rng.standard_normal(y_ref.shape)
    want = (y_ref, *naive.conv2d_backward(dy, cache_ref)[:2])
    x32, kern32, dy32 = (a.astype(np.float32) for a in (x, kern, dy))
    results, before = [], numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append((_winograd.conv2d_forward(x32, kern32, "valid"),
                            *_winograd.conv2d_backward(dy32, x32, kern32, "valid")))
    finally:
        numba.set_num_threads(before)
    for one, two, expected in zip(*results, want):
        assert one.dtype == np.float32
        np.testing.assert_array_equal(one, two)
        np.testing.assert_allclose(one, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_winograd_loops_apply_the_documented_matrices(rng):
    """Each compiled transform on one 4x4 patch (one 2x2 output block), against the
    matrices in kernels._winograd written as products: B^T d B, A^T m A, and the two
    run backwards, A g A^T and B v B^T; and the identity they make up (a 3x3 correlation)."""
    from kernels import _winograd as w
    C = 3
    d = rng.standard_normal((1, 4, 4, C))
    V_buffer, V = w._tile_matrices(1, C, d.dtype)
    w.input_tiles_loop(d, 0, 0, 1, 1, V_buffer)
    np.testing.assert_allclose(V[:, 0].reshape(4, 4, C), np.einsum("ai,ijc,bj->abc", w.B_T, d[0], w.B_T), **TIGHT)
    m = rng.standard_normal((1, 16, C))
    y = np.empty((1, 2, 2, C))
    w.output_tiles_loop(m, 1, 1, y)
    np.testing.assert_allclose(y[0], np.einsum("ai,ijc,bj->abc", w.A_T, m[0].reshape(4, 4, C), w.A_T), **TIGHT)
    g = rng.standard_normal((1, 2, 2, C))
    Z_buffer, Z = w._tile_matrices(1, C, g.dtype)
    w.gradient_tiles_loop(g, 1, 1, Z_buffer)
    np.testing.assert_allclose(Z[:, 0].reshape(4, 4, C), np.einsum("ia,ijc,jb->abc", w.A_T, g[0], w.A_T), **TIGHT)
    dx = np.empty((1, 4, 4, C))
    w.input_gradient_loop(m, 0, 0, 1, 1, dx)
    np.testing.assert_allclose(dx[0], np.einsum("ia,ijc,jb->abc", w.B_T, m[0].reshape(4, 4, C), w.B_T), **TIGHT)
    kernel = rng.standard_normal((3, 3, C, 1))
    U = w.transformed_kernel(kernel)[:, :, 0].reshape(4, 4, C)
    winograd = np.einsum("ai,ijc,bj->ab", w.A_T, U * V[:, 0].reshape(4, 4, C), w.A_T)
    direct = [[np.sum(d[0, r:r + 3, q:q + 3] * kernel[..., 0]) for q in range(2)] for r in range(2)]
    np.testing.assert_allclose(winograd, direct, **TIGHT)


def test_winograd_only_for_the_shapes_it_speeds_up():
    from kernels._winograd import worth_it
    one = (1, 1)
    assert worth_it((128, 13, 13, 32), (3, 3, 32, 64), one, "valid")       # Fashion conv2
    assert worth_it((128, 14, 14, 32), (3, 3, 32, 64), one, "same")        # model 2's conv2
    assert worth_it((128, 7, 7, 64), (3, 3, 64, 128), one, "valid")        # model 2's conv3: 36 for 25
    assert not worth_it((128, 5, 5, 64), (3, 3, 64, 128), one, "valid")    # 3x3 out: 16 computed
    assert not worth_it((128, 28, 28, 1), (3, 3, 1, 32), one, "valid")     # one input channel
    assert not worth_it((64, 12, 12, 6), (5, 5, 6, 16), one, "valid")      # 5x5 window
    assert not worth_it((64, 16, 16, 32), (3, 3, 32, 64), (2, 2), "same")  # stride 2


@pytest.mark.parametrize("impl", sorted(kernels.IMPLS))
def test_conv_backward_can_skip_dx(impl, rng):
    """need_dx=False (a model's first layer) gives dx None and the same weight gradients."""
    mod = kernels.IMPLS[impl]
    x, kern, bias = rng.standard_normal((2, 7, 6, 2)), rng.standard_normal((3, 2, 2, 3)), np.ones(3)
    y, cache = mod.conv2d_forward(x, kern, bias, (2, 1), "same")
    dy = rng.standard_normal(y.shape)
    dx, dk, db = mod.conv2d_backward(dy, cache, need_dx=False)
    assert dx is None
    _, dk_ref, db_ref = mod.conv2d_backward(dy, cache)
    _close(dk, dk_ref, "dkernel")
    _close(db, db_ref, "dbias")


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x_shape, k_shape, padding", [
    ((3, 28, 28, 1), (5, 5, 1, 6), "valid"),      # LeNet conv1
    ((2, 12, 10, 1), (3, 3, 1, 8), "same"),
    ((2, 9, 7, 1), (4, 2, 1, 16), "same"),        # even window: more padding after than before
    ((2, 8, 11, 1), (3, 3, 1, 1), "valid"),
    ((1, 5, 6, 1), (5, 6, 1, 3), "valid"),        # one output pixel
])
def test_direct_input_gradient_matches_naive(x_shape, k_shape, padding, monkeypatch, rng):
    """The direct input gradient of thin one-channel convolutions (numba_kernels) gives the
    naive dx, and is the path those shapes take."""
    from kernels import _numba_loops as loops, numba_kernels
    calls = []
    direct = loops.one_channel_input_grad_loop
    monkeypatch.setattr(loops, "one_channel_input_grad_loop", lambda *a: calls.append(1) or direct(*a))
    x, kern = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    y_ref, cache_ref = naive.conv2d_forward(x, kern, None, (1, 1), padding)
    y, cache = numba_kernels.conv2d_forward(x, kern, None, (1, 1), padding)
    dy = rng.standard_normal(y.shape)
    dx, dk, _ = numba_kernels.conv2d_backward(dy, cache)
    dx_ref, dk_ref, _ = naive.conv2d_backward(dy, cache_ref)
    assert calls == [1]
    _close(dx, dx_ref, "dx")
    _close(dk, dk_ref, "dkernel")


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x_shape, padding, takes_2x2_loop", [
    ((2, 26, 26, 32), "valid", True), ((3, 7, 9, 5), "valid", True),     # odd: last row unused
    ((2, 8, 6, 1), "same", True),                                        # even "same": no padding
    ((2, 7, 6, 3), "same", False), ((1, 4, 5, 33), "same", False),      # padding after: general
])
@pytest.mark.parametrize("values", ["random", "ties"])
def test_maxpool_2x2_loop_matches_naive(x_shape, padding, takes_2x2_loop, values, monkeypatch, rng):
    """2x2 windows at stride 2 inside the image take a loop of their own: same maxima and the
    same first-maximum positions (ties included) as the naive loops, and only those shapes."""
    from kernels import _numba_loops as loops, numba_kernels
    calls = []
    special = loops.maxpool_2x2_forward_loop
    monkeypatch.setattr(loops, "maxpool_2x2_forward_loop", lambda *a: calls.append(1) or special(*a))
    x = rng.standard_normal(x_shape) if values == "random" else rng.integers(0, 3, x_shape).astype(float)
    y, cache = numba_kernels.maxpool2d_forward(x, (2, 2), (2, 2), padding)
    y_ref, cache_ref = naive.maxpool2d_forward(x, (2, 2), (2, 2), padding)
    assert len(calls) == takes_2x2_loop
    _close(y, y_ref, "y")
    dy = rng.standard_normal(y.shape)
    _close(numba_kernels.maxpool2d_backward(dy, cache), naive.maxpool2d_backward(dy, cache_ref), "dx")


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv("MINICNN_IM2COL_BUDGET_MB", "1.5")
    assert kernels.get_im2col_budget() == int(1.5 * 2**20)
    monkeypatch.delenv("MINICNN_IM2COL_BUDGET_MB")
    assert kernels.get_im2col_budget() == 256 * 2**20
    with pytest.raises(ValueError):
        kernels.set_im2col_budget(0)


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_numba_cache_off_for_read_only_install(tmp_path, monkeypatch):
    from kernels import _numba_loops
    assert _numba_loops.cache_enabled(str(tmp_path), {}) is True
    assert _numba_loops.cache_enabled(str(tmp_path), {"NUMBA_CACHE_DIR": "/elsewhere"}) is True
    monkeypatch.setattr(_numba_loops.os, "access", lambda path, mode: False)  # as on a read-only disk
    assert _numba_loops.cache_enabled(str(tmp_path), {}) is False
    assert _numba_loops.cache_enabled(str(tmp_path), {"NUMBA_CACHE_DIR": "/elsewhere"}) is True


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x_shape, k, strides, padding", [
    ((3, 9, 8, 32), (3, 3), (1, 1), "valid"),      # long window rows: slice copies
    ((2, 10, 7, 6), (5, 5), (2, 1), "same"),       # short rows, several channels: by offset
    ((2, 7, 9, 3), (3, 3), (1, 2), "same"),
    ((2, 8, 8, 1), (5, 5), (1, 1), "same"),        # one channel
])
def test_every_numba_copy_strategy_matches_naive(x_shape, k, strides, padding, rng):
    """Both compiled im2col/col2im loop pairs give the naive result, whatever the shape
    would pick by itself."""
    from kernels import _numba_loops as loops, numba_kernels
    x = rng.standard_normal(x_shape)
    col_ref = naive.im2col(x, *k, strides, padding)
    dx_ref = naive.col2im(col_ref, x_shape, *k, strides, padding)
    sh, sw, OH, OW, pt, pl = numba_kernels._geometry(x_shape, *k, strides, padding)
    for to_col, to_image in [(loops.im2col_loop, loops.col2im_loop),
                             (loops.im2col_by_offset_loop, loops.col2im_by_offset_loop)]:
        col = np.full_like(col_ref, np.nan)
        to_col(x, *k, sh, sw, pt, pl, OH, OW, col)
        np.testing.assert_array_equal(col, col_ref)
        dx = np.zeros(x_shape)
        to_image(col, *k, sh, sw, pt, pl, OH, OW, dx)
        _close(dx, dx_ref, f"{to_image.__name__}")


@pytest.mark.parametrize("impl", sorted(FAST))
def test_conv_peak_memory_stays_within_budget(impl, rng):
    """Forward and backward together allocate at most the im2col budget beyond the layer's
    own arrays (output, input gradient and per-chunk pieces of them), as tracemalloc sees it."""
    import tracemalloc
    mod = kernels.IMPLS[impl]
    x = rng.standard_normal((64, 16, 16, 4)).astype(np.float32)
    kern = rng.standard_normal((5, 5, 4, 8)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 16, 8)).astype(np.float32)
    whole_col = 64 * 16 * 16 * 5 * 5 * 4 * 4                 # 6.5 MB: far above the budget
    budget = 2**20
    own_arrays = dy.nbytes + 3 * x.nbytes + 64 * 1024         # y, dx, padded/chunk copies of x
    mod.conv2d_backward(dy, mod.conv2d_forward(x, kern, None, (1, 1), "same")[1])  # compile first
    try:
        kernels.set_im2col_budget(budget)
        tracemalloc.start()
        y, cache = mod.conv2d_forward(x, kern, None, (1, 1), "same")
        grads = mod.conv2d_backward(dy, cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        kernels.set_im2col_budget(None)
    assert whole_col > 4 * budget
    assert peak <= budget + own_arrays, f"peak {peak / 2**20:.2f} MiB"
    assert grads[0].shape == x.shape


@pytest.mark.parametrize("value", ["inf", "nan", "-3", "0", "abc"])
def test_budget_from_environment_must_be_positive_and_finite(monkeypatch, value):
    monkeypatch.setenv("MINICNN_IM2COL_BUDGET_MB", value)
    with pytest.raises(ValueError, match="MINICNN_IM2COL_BUDGET_MB must be a positive, finite"):
        kernels.get_im2col_budget()


# ---------------------------------------------------------------- matrix products on threads

@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="the thread count comes from numba")
@pytest.mark.parametrize("M, K, N", [(7, 3, 2), (5000, 40, 30), (1001, 300, 17), (64, 500, 800)])
def test_split_matrix_products_equal_numpy(M, K, N, rng, monkeypatch):
    """Row or column blocks on 1-3 threads give NumPy's product (up to summation order)."""
    import numba
    from kernels import _gemm
    a, b, c = rng.standard_normal((M, K)), rng.standard_normal((K, N)), rng.standard_normal((M, N))
    before = numba.get_num_threads()
    monkeypatch.setattr(_gemm, "MIN_FLOPS_PER_THREAD", 1000)    # split even the middle case,
    monkeypatch.setattr(_gemm, "MIN_COLUMNS_PER_THREAD", 1)     # and into thin column blocks
    try:
        for threads in range(1, min(3, numba.config.NUMBA_NUM_THREADS) + 1):
            numba.set_num_threads(threads)
            np.testing.assert_allclose(kernels.matmul(a, b), a @ b, **TIGHT)
            out = np.empty((M, N))
            assert kernels.matmul(a, b, out=out) is out
            np.testing.assert_allclose(kernels.matmul_tn(a, c), a.T @ c, **TIGHT)
            sums = np.empty((K, N))
            assert kernels.matmul_tn(a, c, out=sums) is sums
            np.testing.assert_allclose(sums, a.T @ c, **TIGHT)
    finally:
        numba.set_num_threads(before)


def test_matrix_products_leave_blas_threads_as_they_were():
    from threadpoolctl import threadpool_info
    blas = lambda: [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]  # noqa: E731
    before = blas()
    kernels.matmul(np.ones((300, 200)), np.ones((200, 100)))
    assert blas() == before


def test_nested_single_threaded_blas_blocks_set_the_limit_once(monkeypatch):
    """Inside fit's block, products do not set BLAS's thread count again (it cost 12 us a
    product); BLAS stays on one thread throughout and is restored when the outer block ends."""
    from threadpoolctl import threadpool_info
    from kernels import _gemm
    blas = lambda: [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]  # noqa: E731
    before = blas()
    with _gemm.single_threaded_blas(rescan=True):
        limits = []
        real_limit = _gemm._blas.limit
        monkeypatch.setattr(_gemm._blas, "limit", lambda **kw: limits.append(kw) or real_limit(**kw))
        a = np.ones((300, 200))
        np.testing.assert_allclose(kernels.matmul(a, a.T), a @ a.T)
        with _gemm.single_threaded_blas():
            assert set(blas()) == {1}
        assert set(blas()) == {1} and limits == []
    assert blas() == before
    kernels.matmul(a, a.T)                               # outside any block: it sets its own
    assert limits == [{"limits": 1}] and blas() == before


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_split_products_work_in_a_forked_child(rng, monkeypatch):
    """A child forked after the thread pools exist makes its own (it would hang otherwise)."""
    import multiprocessing
    from kernels import _gemm
    monkeypatch.setattr(_gemm, "MIN_FLOPS_PER_THREAD", 1000)
    a, b = rng.standard_normal((400, 50)), rng.standard_normal((50, 30))
    kernels.matmul(a, b)                                  # the parent's pools now exist
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(kernels.matmul, (a, b)).get(timeout=60)
    np.testing.assert_allclose(result, a @ b, **TIGHT)


def _every_compiled_loop(rng):
    """Outputs of every Numba twin that runs a compiled loop, on NumPy float32 arrays big
    enough for several images per thread."""
    from kernels import numba_kernels as nk
    x = rng.standard_normal((6, 9, 8, 5)).astype(np.float32)
    one = rng.standard_normal((6, 9, 8, 1)).astype(np.float32)
    out = [nk.im2col(x, 3, 3, (1, 1), "same"), nk.im2col(x, 2, 5, (2, 1), "valid"),
           nk.col2im(nk.im2col(x, 3, 3, (1, 1), "same"), x.shape, 3, 3, (1, 1), "same"),
           nk.col2im(nk.im2col(x, 2, 5, (2, 1), "valid"), x.shape, 2, 5, (2, 1), "valid"),
           nk.im2col(one, 5, 5, (1, 1), "same")]
    for pool in ("maxpool2d", "avgpool2d"):
        y, cache = getattr(nk, pool + "_forward")(x, (3, 3), (2, 2), "same")
        out += [y, getattr(nk, pool + "_backward")(np.ones_like(y), cache)]
    mean, var = nk.batch_moments(x)
    y, cache = nk.batchnorm_forward(x, mean, var, np.float32(1.5) + mean, mean, 1e-3)
    out += [mean, var, y, *nk.batchnorm_backward(x, cache)]
    for activation in ("relu", "tanh", "linear"):
        y = nk.bias_activation(x.copy(), x[0, 0, 0], activation, 0.1)
        out += [y, *nk.activation_backward(x, y, activation, 0.1)]
    w, g, m, v = (rng.standard_normal(1000).astype(np.float32) for _ in range(4))
    nk.adam_step(w, g, m, np.abs(v), 1e-3, 0.9, 0.999, 1e-7)
    return out + [w, m, v]


def test_parallel_loops_give_what_one_thread_gives(rng, monkeypatch):
    """Every compiled loop forced onto two threads (however small its arrays), against the
    same call on one: prange never lets two threads touch one value, and sums are cut
    into a fixed number of blocks, so the results must be identical."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here")
    from kernels import _numba_loops
    seed = rng.integers(1 << 30)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _every_compiled_loop(np.random.default_rng(seed))
        for loop in vars(_numba_loops).values():
            if hasattr(loop, "min_parallel"):
                monkeypatch.setattr(loop, "min_parallel", 0)
        numba.set_num_threads(2)
        parallel = _every_compiled_loop(np.random.default_rng(seed))
    finally:
        numba.set_num_threads(before)
    assert len(serial) == len(parallel) == 27
    for k, (a, b) in enumerate(zip(serial, parallel)):
        np.testing.assert_array_equal(a, b, err_msg=f"output {k}")
