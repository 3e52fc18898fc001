"""Numba twins: thin Python wrappers that allocate outputs and call compiled loops.

The loops live in ``_numba_loops`` (``@njit(cache=True, parallel=True)``, prange over
the batch). Matrix products go to NumPy's BLAS, which is faster than any loop we could
write. Direct convolution loops (no col matrix) were tried twice for one input
channel and lost in training both times. The second try vectorised (each tap adds a
slice of the padded image times one weight into a row of sums): LeNet conv1's forward
took 0.54 ms against im2col + BLAS's 1.37 ms (batch 64, 1 thread, AMD EPYC), but its
weight gradient 1.46 ms against 0.46 ms for one product with the col matrix the forward
pass kept, so a training step lost (2.00 vs 1.83 ms); with 12 or more filters, or 3x3
windows, the direct forward lost too (Fashion conv1: 3.7 vs 1.4 ms). So the forward
pass and the weight gradient of a one-channel convolution take the im2col path (a third
try, on 30 Nov, gave LeNet conv1's forward 0.48 against 0.75 ms, but the backward pass
then has to build the col matrix, 0.27 ms: no gain). The input gradient of a one-channel
convolution with few filters is the exception (``conv2d_backward``): there
the same kind of loop is 4x faster than a thin product and col2im. Training never needs
it (such a layer comes first), but a saliency map or a gradient check does.

im2col and col2im pick their loop by the length of a window row, ``kw * C``: long rows
are copied as slices, short ones one window offset at a time (``_loops_for``). A single
input channel is a case of its own (``_im2col_one_channel``): NumPy builds the matrix
column by column, in Fortran order.

Layout contract and tie rule: see ``kernels.naive``.
"""
import functools

import numba
import numpy as np

from . import _numba_loops as loops, _per_position as per_position, _winograd as winograd
from ._budget import get_im2col_budget, images_per_chunk, note_col
from ._gemm import row_block_sum, run_chunks, single_threaded_blas
from ._shapes import conv_geometry, real_cells
from ._threading import even_chunks
from . import numpy_kernels
from .numpy_kernels import gemm_conv_backward, gemm_conv_forward

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"]


def _geometry(x_shape, kh, kw, strides, padding):
    """Plain-int ``(sh, sw, OH, OW, pt, pl)`` (one numba signature, whatever int types came in)."""
    OH, OW, pt, _, pl, _ = conv_geometry(x_shape, kh, kw, strides, padding)
    sh, sw = strides
    return int(sh), int(sw), OH, OW, pt, pl


#: Window rows shorter than this many values are copied one window offset at a time.
#: Measured: slices win from about 16 values (Fashion conv2, 3x3x32: 6x faster than
#: element loops), offsets win below (LeNet conv2, 5x5x6: 0.4 vs 0.8 ms).
SHORT_ROW = 16


def _loops_for(kw, C):
    """(im2col loop, col2im loop) for window rows of ``kw * C`` values."""
    if kw * C < SHORT_ROW:
        return loops.im2col_by_offset_loop, loops.col2im_by_offset_loop
    return loops.im2col_loop, loops.col2im_loop


def im2col(x, kh, kw, strides, padding):
    """Window rows of ``x`` as one matrix (contract in ``kernels.naive``).

    Shapes:
        x: (N, H, W, C).  Returns col: (N*OH*OW, kh*kw*C).
    """
    x = np.ascontiguousarray(x)
    N, _, _, C = x.shape
    if C == 1:
        return _im2col_one_channel(x, kh, kw, strides, padding)
    sh, sw, OH, OW, pt, pl = _geometry(x.shape, kh, kw, strides, padding)
    col = np.empty((N * OH * OW, kh * kw * C), dtype=x.dtype)
    _loops_for(kw, C)[0](x, kh, kw, sh, sw, pt, pl, OH, OW, col)
    return col


def _im2col_one_channel(x, kh, kw, strides, padding):
    """im2col of one-channel images, as the transpose of a C-ordered (kh*kw, N*OH*OW) array.

    Each column of the matrix (one window offset) is then one contiguous block, filled
    by one NumPy copy in runs of OW values; into the row-ordered matrix the same copy
    writes one value every kh*kw. BLAS takes either order (the transpose is a flag) and
    the values are the same. LeNet conv1 (batch 64, 1 thread, AMD EPYC): 0.27 ms against
    1.0 ms for the row-ordered matrix, whether NumPy or a compiled loop builds it; its
    forward product took 0.13 ms longer, its weight gradient's 0.05 ms less.

    Shapes:
        x: (N, H, W, 1).  Returns col: (N*OH*OW, kh*kw), Fortran-ordered.
    """
    N = x.shape[0]
    OH, OW, *pads = conv_geometry(x.shape, kh, kw, strides, padding)
    images = numpy_kernels.pad_images(np, x, pads)[..., 0]        # (N, H + pads, W + pads)
    col_t = np.empty((kh, kw, N, OH, OW), dtype=x.dtype)
    for i, j, rows, columns in numpy_kernels.window_offsets(kh, kw, strides, OH, OW):
        col_t[i, j] = images[:, rows, columns]
    return col_t.reshape(kh * kw, N * OH * OW).T


def col2im(col, x_shape, kh, kw, strides, padding):
    """Scatter-add ``col`` back into an image (adjoint of im2col).

    Shapes:
        col: (N*OH*OW, kh*kw*C).  x_shape: (N, H, W, C).  Returns dx: x_shape.
    """
    col = np.ascontiguousarray(col)
    sh, sw, OH, OW, pt, pl = _geometry(x_shape, kh, kw, strides, padding)
    dx = np.zeros(x_shape, dtype=col.dtype)
    _loops_for(kw, x_shape[3])[1](col, kh, kw, sh, sw, pt, pl, OH, OW, dx)
    return dx


#: A batch whose col matrix is larger than this is convolved in chunks of about this size,
#: each chunk's im2col and product run one after the other on one thread, so the product
#: reads the col rows while they are still in cache, and the threads take chunks in turn.
#: BLAS slows down on a col matrix that no longer fits: (M, 288) x (288, 64) on one thread,
#: 92 GFLOP/s at M = 7,744 rows (8.9 MB), 76 GFLOP/s at 25,088 (29 MB). Measured, forward +
#: backward, batch 128, whole batch -> 2 MiB chunks: Fashion conv2 (3x3x32 -> 64) 14.1 ->
#: 11.8 ms on two threads, 25.0 -> 22.0 ms on one; model 2's conv2 22.1 -> 18.7 and
#: 41.5 -> 35.9 ms.
CHUNK_BYTES = 2 << 20
#: ... but never fewer rows than this per chunk: a product of few rows and a long K runs
#: slower (AlexNet conv2, 16 rows x 2,400 per image: 21.1 ms whole, 24.5 ms in 2 MiB chunks).
MIN_CHUNK_ROWS = 1024
#: A col matrix up to this size is built whole, its im2col parallel over the batch: chunks
#: lost there on two threads (Fashion conv1, 3.1 MB: 3.5 ms whole, 4.2 ms in chunks;
#: AlexNet conv1, 5.9 MB: 5.7 against 7.2 ms) and gained nothing on one.
WHOLE_BATCH_BYTES = 8 << 20


def _chunks(x_shape, kernel_shape, strides, padding, itemsize):
    """``(chunks, threads)``: the batch whole if its col matrix is at most WHOLE_BATCH_BYTES,
    else cut into chunks ``(start, stop)`` of about CHUNK_BYTES of col matrix (at least
    MIN_CHUNK_ROWS rows and one image); never more than the im2col budget allows
    (``kernels._budget``). ``threads``: how many may work on chunks at once, each holding
    one chunk's col and its gradient, all of them within the budget."""
    N = x_shape[0]
    kh, kw, C_in, _ = kernel_shape
    OH, OW, *_ = conv_geometry(x_shape, kh, kw, strides, padding)
    per_image = OH * OW * kh * kw * C_in * itemsize
    fits_cache = N if N * per_image <= WHOLE_BATCH_BYTES else max(
        CHUNK_BYTES // per_image, -(-MIN_CHUNK_ROWS // (OH * OW)))
    step = min(images_per_chunk(N, OH * OW, kh * kw * C_in, itemsize, buffers=2), fits_cache)
    threads = max(1, min(numba.get_num_threads(), get_im2col_budget() // (2 * step * per_image)))
    note_col(threads * 2 * step * per_image)
    return even_chunks(N, step), threads


def conv2d_forward(x, kernel, bias, strides, padding):
    """Convolution: compiled im2col + BLAS; a batch whose col matrix is large goes in
    chunks (``CHUNK_BYTES``), shared between the threads; small images with much
    padding go one output position at a time (``kernels._per_position``); 3x3 kernels
    at stride 1 with many channels through Winograd's F(2x2, 3x3) (``kernels._winograd``).

    Shapes:
        x: (N, H, W, C_in).  kernel: (kh, kw, C_in, C_out).  bias: (C_out,) or None.
        Returns y: (N, OH, OW, C_out).
    Cache: (x, kernel, has_bias, strides, padding, col or None): col is kept when the batch
    was one chunk; otherwise the backward pass builds each chunk's col again.
    """
    x = np.ascontiguousarray(x)
    kernel = kernel.astype(x.dtype, copy=False)
    if per_position.worth_it(x.shape, kernel.shape, strides, padding):
        y, col = per_position.conv2d_forward(x, kernel, strides, padding), None
    elif winograd.worth_it(x.shape, kernel.shape, strides, padding):
        y, col = winograd.conv2d_forward(x, kernel, padding), None
    else:
        chunks, threads = _chunks(x.shape, kernel.shape, strides, padding, x.dtype.itemsize)
        if len(chunks) == 1:
            y, (*_, col) = gemm_conv_forward(x, kernel, None, strides, padding, im2col)
        else:
            y, col = _forward_in_chunks(x, kernel, strides, padding, chunks, threads), None
    if bias is not None:
        # compiled: NumPy's broadcast add steps along the short channel axis slowly
        # (LeNet conv1, 6 channels, 0.3M values: 0.25 against 0.09 ms)
        bias_activation(y, bias, "linear")
    return y, (x, kernel, bias is not None, strides, padding, col)


def _forward_in_chunks(x, kernel, strides, padding, chunks, threads):
    """y = x * kernel with no bias, each chunk's im2col and product on one thread."""
    kh, kw, _, C_out = kernel.shape
    w2 = kernel.reshape(-1, C_out)
    OH, OW, *_ = conv_geometry(x.shape, kh, kw, strides, padding)
    y = np.empty((x.shape[0], OH, OW, C_out), dtype=x.dtype)

    def forward_chunk(_, lo, hi):
        col = im2col(x[lo:hi], kh, kw, strides, padding)
        np.matmul(col, w2, out=y[lo:hi].reshape(-1, C_out))
    with single_threaded_blas():
        run_chunks(forward_chunk, chunks, threads)
    return y


#: The input gradient of a stride-1 convolution of one-channel images with at most this
#: many filters is computed directly (``loops.one_channel_input_grad_loop``): through
#: col2im it is a product dy @ kernel.T summing only C_out values per entry, which BLAS
#: runs slowly, and a col-sized gradient to scatter. Measured, 1 thread, AMD EPYC: LeNet
#: conv1 (batch 64, 5x5, 6 filters) 2.4 ms through col2im, 0.58 ms direct; one channel to
#: 16 filters, 3x3: 2.1 against 1.8 ms; to 32 filters the direct loop loses (3.6 vs 2.7).
DIRECT_INPUT_GRAD_MAX_FILTERS = 16


def _direct_input_grad(x_shape, kernel_shape, strides):
    """Whether conv2d_backward computes dx with the direct loop (see above)."""
    return (x_shape[3] == 1 and kernel_shape[3] <= DIRECT_INPUT_GRAD_MAX_FILTERS
            and tuple(strides) == (1, 1))


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of conv2d_forward: BLAS products plus the compiled col2im, chunk by chunk
    when the forward pass went in chunks, or by output position or through Winograd as
    it did; dx of a thin one-channel convolution directly.
    ``need_dx=False`` skips the input gradient: dx is None.

    Shapes:
        dy: (N, OH, OW, C_out).  Returns dx: (N, H, W, C_in), dkernel: (kh, kw, C_in, C_out),
        dbias: (C_out,) or None.
    """
    x, kernel, has_bias, strides, padding, _ = cache
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    if per_position.worth_it(x.shape, kernel.shape, strides, padding):
        dx, dw = per_position.conv2d_backward(dy, x, kernel, strides, padding, need_dx)
        return dx, dw, numpy_kernels.bias_gradient(dy) if has_bias else None
    if winograd.worth_it(x.shape, kernel.shape, strides, padding):
        dx, dw = winograd.conv2d_backward(dy, x, kernel, padding, need_dx)
        return dx, dw, numpy_kernels.bias_gradient(dy) if has_bias else None
    if not (need_dx and _direct_input_grad(x.shape, kernel.shape, strides)):
        return _backward_by_products(dy, cache, need_dx)
    _, dw, dbias = _backward_by_products(dy, cache, need_dx=False)
    dx = np.empty(x.shape, dtype=x.dtype)
    pt, pl = _geometry(x.shape, *kernel.shape[:2], strides, padding)[4:]
    loops.one_channel_input_grad_loop(dy, kernel, pt, pl, dx)
    return dx, dw, dbias


def _backward_by_products(dy, cache, need_dx):
    """conv2d_backward through the products: dkernel = col.T @ dy, dx = col2im(dy @ kernel.T)."""
    x, kernel, has_bias, strides, padding, col = cache
    if col is not None:
        return gemm_conv_backward(dy, cache, im2col, col2im, need_dx)
    kh, kw, _, C_out = kernel.shape
    w2 = kernel.reshape(-1, C_out)
    chunks, threads = _chunks(x.shape, kernel.shape, strides, padding, x.dtype.itemsize)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    dw_parts = [None] * len(chunks)

    def backward_chunk(i, lo, hi):
        chunk_col = im2col(x[lo:hi], kh, kw, strides, padding)
        g = dy[lo:hi].reshape(-1, C_out)
        dw_parts[i] = row_block_sum(chunk_col, g)
        if need_dx:
            dx[lo:hi] = col2im(g @ w2.T, x[lo:hi].shape, kh, kw, strides, padding)
    with single_threaded_blas():
        run_chunks(backward_chunk, chunks, threads)
    dw = dw_parts[0]
    for part in dw_parts[1:]:      # in chunk order: the same sum whatever the thread count
        dw += part
    dbias = numpy_kernels.bias_gradient(dy) if has_bias else None
    return dx, dw.reshape(kernel.shape), dbias


def maxpool2d_forward(x, pool_size, strides, padding):
    """Window maximum per channel, remembering where the first maximum was.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (x.shape, argmax as int32 flat position (h*W + w)*C + c inside each image).
    """
    x = np.ascontiguousarray(x)
    ph, pw = pool_size
    sh, sw, OH, OW, pt, pl = _geometry(x.shape, ph, pw, strides, padding)
    y = np.empty((x.shape[0], OH, OW, x.shape[3]), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    if (ph, pw, sh, sw, pt, pl) == (2, 2, 2, 2, 0, 0) and 2 * OH <= x.shape[1] and 2 * OW <= x.shape[2]:
        loops.maxpool_2x2_forward_loop(x, y, arg)       # the common case, in registers
    else:
        loops.maxpool_forward_loop(x, ph, pw, sh, sw, pt, pl, y, arg)
    return y, (x.shape, arg)


def maxpool2d_backward(dy, cache):
    """Add dy at each window's first maximum.

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    x_shape, arg = cache
    dx = np.empty(x_shape, dtype=dy.dtype)         # zeroed image by image in the loop
    loops.maxpool_backward_loop(np.ascontiguousarray(dy), arg, dx)
    return dx


def _counts(x_shape, pool_size, strides, padding, dtype):
    """(OH, OW) read-only array: how many real cells each window covers."""
    return _counts_of_image(x_shape[1], x_shape[2], tuple(pool_size), tuple(strides), padding, np.dtype(dtype))


@functools.lru_cache(maxsize=64)
def _counts_of_image(H, W, pool_size, strides, padding, dtype):
    # Cached: building it took 10 us, as long as LeNet's second pooling itself.
    (ph, pw), (sh, sw) = pool_size, strides
    counts = np.outer(real_cells(H, ph, sh, padding), real_cells(W, pw, sw, padding)).astype(dtype)
    counts.flags.writeable = False
    return counts


def avgpool2d_forward(x, pool_size, strides, padding):
    """Mean over each window's real cells.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (x.shape, pool_size, strides, padding).
    """
    x = np.ascontiguousarray(x)
    ph, pw = pool_size
    sh, sw, OH, OW, pt, pl = _geometry(x.shape, ph, pw, strides, padding)
    counts = _counts(x.shape, pool_size, strides, padding, x.dtype)
    y = np.empty((x.shape[0], OH, OW, x.shape[3]), dtype=x.dtype)
    loops.avgpool_forward_loop(x, ph, pw, sh, sw, pt, pl, counts, y)
    return y, (x.shape, pool_size, strides, padding)


def avgpool2d_backward(dy, cache):
    """Spread dy / cells over each window's real cells.

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    x_shape, pool_size, strides, padding = cache
    ph, pw = pool_size
    sh, sw, _, _, pt, pl = _geometry(x_shape, ph, pw, strides, padding)
    counts = _counts(x_shape, pool_size, strides, padding, dy.dtype)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    loops.avgpool_backward_loop(np.ascontiguousarray(dy), ph, pw, sh, sw, pt, pl, counts, dx)
    return dx


# -- batch normalisation: the compiled twins of minicnn/layers/normalization.py -------------
# (not in __all__: the layer picks them, through kernels.compiled_twins, for NumPy arrays)

def _channel_sums(a, what, b=None, center=None):
    """Per-channel float64 sums of a (rows, C) array (see channel_sums_loop). Shapes: (C,)."""
    C = a.shape[1]
    partial = np.zeros((loops.SUM_BLOCKS, C))
    loops.channel_sums_loop(a, a if b is None else b, np.zeros(C) if center is None else center,
                            what, partial)
    return partial.sum(axis=0)


def batch_moments(x):
    """Per-channel mean and biased variance, accumulated in float64, in two passes.

    Shapes: x: (N, C) or (N, H, W, C).  Returns mean, var: (C,), dtype of x.
    """
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    mean = _channel_sums(rows, 0) / len(rows)
    var = _channel_sums(rows, 1, center=mean) / len(rows)
    return mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_forward(x, mean, var, gamma, beta, epsilon):
    """y = gamma · (x - mean) / sqrt(var + epsilon) + beta in one pass, keeping x_hat.

    Shapes: x: (N, C) or (N, H, W, C); mean, var, gamma, beta: (C,).  Returns (y, cache).
    """
    x = np.ascontiguousarray(x)
    inv_std = (1 / np.sqrt(var + epsilon)).astype(x.dtype)
    x_hat, y = np.empty_like(x), np.empty_like(x)
    C = x.shape[-1]
    loops.batchnorm_apply_loop(x.reshape(-1, C), mean.astype(x.dtype), inv_std,
                               gamma.astype(x.dtype), beta.astype(x.dtype),
                               x_hat.reshape(-1, C), y.reshape(-1, C))
    return y, (x_hat, inv_std, gamma)


def batchnorm_backward(dy, cache):
    """The same gradients as the NumPy version: two float64 sums per channel, then one pass.

    Shapes: dy: like x.  Returns dx (like x), dgamma (C,), dbeta (C,).
    """
    x_hat, inv_std, gamma = cache
    C = dy.shape[-1]
    dy_rows, x_hat_rows = np.ascontiguousarray(dy).reshape(-1, C), x_hat.reshape(-1, C)
    m = len(dy_rows)
    sum_dy = _channel_sums(dy_rows, 0)
    sum_dy_x_hat = _channel_sums(dy_rows, 2, b=x_hat_rows)
    scale = gamma.astype(np.float64) * inv_std            # dx = scale·(dy - Σdy/m - x_hat·Σ(dy·x_hat)/m)
    dx = np.empty_like(dy_rows)
    loops.batchnorm_dx_loop(dy_rows, x_hat_rows, scale.astype(dy.dtype), (scale * sum_dy / m).astype(dy.dtype),
                            (scale * sum_dy_x_hat / m).astype(dy.dtype), dx)
    return dx.reshape(dy.shape), sum_dy_x_hat.astype(dy.dtype), sum_dy.astype(dy.dtype)


# -- optimiser: the compiled twin of minicnn.optimizers.adam_step ---------------------------

def adam_step(w, g, m, v, alpha, beta_1, beta_2, epsilon):
    """Adam's update of w, m and v in place, in one compiled pass (see adam_loop).

    Shapes: w, g, m, v: all the same; w, m and v C-contiguous (see ``_view``).
    """
    scalar = w.dtype.type
    loops.adam_loop(_view(w, -1), np.ascontiguousarray(g, dtype=w.dtype).reshape(-1), _view(m, -1), _view(v, -1),
                    scalar(alpha), scalar(1 - beta_1), scalar(1 - beta_2), scalar(epsilon))


# -- bias and activation: compiled twins of what Dense and Conv2D do after x·W ----------------
# (minicnn/layers/base.py's ActivationMixin picks them, through kernels.compiled_twins)

#: activations computed here, by name, with the code activation_backward_loop knows them by
FUSED_ACTIVATIONS = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3}


def bias_activation(z, bias, activation, alpha=0.0):
    """activation(z + bias), overwriting z: bias and relu in one pass over memory.

    tanh and sigmoid add the bias here and then run NumPy's vectorised tanh in place,
    which is about 10x faster than a compiled loop calling the scalar tanh or exp for
    each value. Sigmoid uses sigmoid(z) = (1 + tanh(z/2)) / 2, which never overflows:
    four passes in place over memory the batch has in cache, against seven with two
    temporary arrays for activations.Sigmoid's form (64 x 128 float32: 6 against 22 us).
    Shapes: z: (..., C), C-contiguous (the layer's own x·W); bias: (C,) or None.
    """
    rows = _view(z, -1, z.shape[-1])
    if bias is not None or activation == "relu":
        bias = np.zeros(rows.shape[1], z.dtype) if bias is None else bias.astype(z.dtype, copy=False)
        loops.bias_relu_loop(rows, bias, z.dtype.type(alpha), activation == "relu")
    if activation == "tanh":
        np.tanh(z, out=z)
    elif activation == "sigmoid":
        z *= 0.5
        np.tanh(z, out=z)
        z *= 0.5
        z += 0.5
    return z


def activation_backward(dy, y, activation, alpha=0.0):
    """dz = dy · activation'(y) and the bias gradient (dz summed over all but the last
    axis, in float64, cast back), in one pass. Shapes: dy, y: (..., C).  Returns dz, dbias (C,)."""
    C = y.shape[-1]
    dy_rows = np.ascontiguousarray(dy, dtype=y.dtype).reshape(-1, C)
    dz = np.empty_like(dy_rows)
    partial = np.zeros((loops.SUM_BLOCKS, C))
    loops.activation_backward_loop(dy_rows, _view(y, -1, C), FUSED_ACTIVATIONS[activation],
                                   y.dtype.type(alpha), dz, partial)
    return dz.reshape(y.shape), partial.sum(axis=0).astype(y.dtype)


def _view(a, *shape):
    """``a.reshape(*shape)`` that is sure to be a view: the twins above write through these
    (a reshaped copy of a non-contiguous array would silently drop the update)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"the compiled twins update arrays through reshaped views, so they must be "
                         f"C-contiguous; got strides {a.strides} for shape {a.shape}")
    return a.reshape(*shape)
