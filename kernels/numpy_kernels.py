"""Vectorised twins of ``naive``: loops over the kh*kw window offsets, never over pixels.

For each window offset ``(i, j)`` one strided slice of the padded input holds that
offset's pixel for every output position at once, so im2col is ``kh*kw`` slice copies
and col2im is ``kh*kw`` slice additions (``+=`` on distinct slices never collides,
unlike fancy-index scatter). Only operations CuPy also has are used (no ``np.add.at``,
no ``as_strided``), so the same code runs on GPU arrays via ``get_array_module``.

Layout contract and tie rule: see ``kernels.naive``.
"""
from ._budget import images_per_chunk, note_col
from ._gemm import matmul, matmul_tn
from ._shapes import conv_geometry, real_cells
from .backend import get_array_module

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"]


def window_offsets(kh, kw, strides, OH, OW):
    """For each window offset (i, j): the row and column slices of the padded input
    that offset reads for all OH x OW output positions."""
    sh, sw = strides
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i, i + sh * (OH - 1) + 1, sh), slice(j, j + sw * (OW - 1) + 1, sw)


def pad_images(xp, x, pads, value=0):
    """``x`` with ``value`` around each image: (N, H, W, C) -> (N, H+pt+pb, W+pl+pr, C)
    for pads (pt, pb, pl, pr); ``x`` itself when there is no padding."""
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr):
        return x
    return xp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _crop(xp, dxp, pads, H, W):
    pt, _, pl, _ = pads
    if dxp.shape[1:3] == (H, W):
        return dxp
    return xp.ascontiguousarray(dxp[:, pt:pt + H, pl:pl + W, :])


def im2col(x, kh, kw, strides, padding):
    """Window rows of ``x`` as one matrix (contract in ``kernels.naive``).

    Shapes:
        x: (N, H, W, C).  Returns col: (N*OH*OW, kh*kw*C).
    """
    xp = get_array_module(x)
    N, _, _, C = x.shape
    OH, OW, *pads = conv_geometry(x.shape, kh, kw, strides, padding)
    x = pad_images(xp, x, pads)
    col = xp.empty((N, OH, OW, kh, kw, C), dtype=x.dtype)
    for i, j, hs, ws in window_offsets(kh, kw, strides, OH, OW):
        col[:, :, :, i, j, :] = x[:, hs, ws, :]
    return col.reshape(N * OH * OW, kh * kw * C)


def col2im(col, x_shape, kh, kw, strides, padding):
    """Scatter-add ``col`` back into an image (adjoint of im2col).

    Shapes:
        col: (N*OH*OW, kh*kw*C).  x_shape: (N, H, W, C).  Returns dx: x_shape.
    """
    xp = get_array_module(col)
    N, H, W, C = x_shape
    OH, OW, *pads = conv_geometry(x_shape, kh, kw, strides, padding)
    pt, pb, pl, pr = pads
    col = col.reshape(N, OH, OW, kh, kw, C)
    dxp = xp.zeros((N, H + pt + pb, W + pl + pr, C), dtype=col.dtype)
    for i, j, hs, ws in window_offsets(kh, kw, strides, OH, OW):
        dxp[:, hs, ws, :] += col[:, :, :, i, j, :]
    return _crop(xp, dxp, pads, H, W)


def gemm_conv_forward(x, kernel, bias, strides, padding, im2col_fn):
    """Convolution as ``im2col_fn`` + one matrix product per batch chunk.

    The batch is cut into chunks so that a chunk's col matrix and, in the backward pass,
    its gradient fit ``get_im2col_budget()`` together; when one chunk holds the whole
    batch its col is kept for the backward pass. Shared with ``numba_kernels``, which
    passes its compiled im2col.
    """
    xp = get_array_module(x)
    kh, kw, C_in, C_out = kernel.shape
    kernel = kernel.astype(x.dtype, copy=False)   # never promote float32 to float64
    N = x.shape[0]
    OH, OW, *_ = conv_geometry(x.shape, kh, kw, strides, padding)
    w2 = kernel.reshape(-1, C_out)
    step = images_per_chunk(N, OH * OW, kh * kw * C_in, x.dtype.itemsize, buffers=2)
    y = xp.empty((N, OH, OW, C_out), dtype=x.dtype)
    for lo in range(0, N, step):
        col = im2col_fn(x[lo:lo + step], kh, kw, strides, padding)
        note_col(col.nbytes)
        matmul(col, w2, out=y[lo:lo + step].reshape(-1, C_out))
    if bias is not None:
        y += bias.astype(x.dtype, copy=False)
    keep = col if step >= N else None
    return y, (x, kernel, bias is not None, strides, padding, keep)


def gemm_conv_backward(dy, cache, im2col_fn, col2im_fn, need_dx=True):
    """``dkernel = col.T @ dy`` and ``dx = col2im(dy @ kernel.T)``, chunk by chunk.

    With ``need_dx=False`` the col2im half is skipped and dx is None. A chunk's col and
    its gradient ``dcol`` are the only col-sized buffers alive at once, and the forward
    pass sized the chunks so that both fit the budget.
    """
    x, kernel, has_bias, strides, padding, col = cache
    xp = get_array_module(dy)
    kh, kw, C_in, C_out = kernel.shape
    N = x.shape[0]
    w2 = kernel.reshape(-1, C_out)
    dy = dy.astype(x.dtype, copy=False)
    step = N if col is not None else images_per_chunk(
        N, dy.shape[1] * dy.shape[2], w2.shape[0], x.dtype.itemsize, buffers=2)
    dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None
    dw = xp.zeros(w2.shape, dtype=x.dtype)
    for lo in range(0, N, step):
        xs = x[lo:lo + step]
        c = col if col is not None else im2col_fn(xs, kh, kw, strides, padding)
        g = dy[lo:lo + step].reshape(-1, C_out)
        dw += matmul_tn(c, g)
        if need_dx:
            dcol = matmul(g, w2.T)
            note_col(c.nbytes + dcol.nbytes)
            dx[lo:lo + step] = col2im_fn(dcol, xs.shape, kh, kw, strides, padding)
        else:
            note_col(c.nbytes)
    dbias = bias_gradient(dy) if has_bias else None
    return dx, dw.reshape(kernel.shape), dbias


def bias_gradient(dy):
    """dy summed over every axis but the last: the gradient of a bias added to each row.

    A row of ones times dy sums its rows ~10x faster than .sum(axis=0) (86528 x 32, float32).
    Shapes: dy: (..., C).  Returns (C,).
    """
    rows = dy.reshape(-1, dy.shape[-1])
    return matmul(get_array_module(dy).ones((1, len(rows)), dtype=dy.dtype), rows)[0]


def conv2d_forward(x, kernel, bias, strides, padding):
    """Convolution as im2col + matrix product, in batch chunks that fit the im2col budget.

    Shapes:
        x: (N, H, W, C_in).  kernel: (kh, kw, C_in, C_out).  bias: (C_out,) or None.
        Returns y: (N, OH, OW, C_out).
    Cache: (x, kernel, has_bias, strides, padding, col or None).
    """
    return gemm_conv_forward(x, kernel, bias, strides, padding, im2col)


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of conv2d_forward via the transposed matrix products and col2im.
    ``need_dx=False`` skips the input gradient: dx is None.

    Shapes:
        dy: (N, OH, OW, C_out).  Returns dx: (N, H, W, C_in), dkernel: (kh, kw, C_in, C_out),
        dbias: (C_out,) or None.
    """
    return gemm_conv_backward(dy, cache, im2col, col2im, need_dx)


def maxpool2d_forward(x, pool_size, strides, padding):
    """Running maximum over the window offsets; padding is -inf so it never wins.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (padded x, y, pool_size, strides, padding, x.shape).
    """
    xp = get_array_module(x)
    ph, pw = pool_size
    OH, OW, *pads = conv_geometry(x.shape, ph, pw, strides, padding)
    xpad = pad_images(xp, x, pads, -xp.inf)
    y = None
    for _, _, hs, ws in window_offsets(ph, pw, strides, OH, OW):
        y = xpad[:, hs, ws, :].copy() if y is None else xp.maximum(y, xpad[:, hs, ws, :], out=y)
    return y, (xpad, y, pool_size, strides, padding, x.shape)


def maxpool2d_backward(dy, cache):
    """Send dy to the first window cell equal to the max, visiting offsets row-major.

    ``taken`` remembers which outputs already found their maximum, which is what makes
    a tie (say an all-equal window) send the gradient to one cell, the first.

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    xpad, y, pool_size, strides, padding, x_shape = cache
    xp = get_array_module(dy)
    ph, pw = pool_size
    OH, OW, *pads = conv_geometry(x_shape, ph, pw, strides, padding)
    dxp = xp.zeros(xpad.shape, dtype=dy.dtype)
    taken = xp.zeros(y.shape, dtype=bool)
    for _, _, hs, ws in window_offsets(ph, pw, strides, OH, OW):
        hit = (xpad[:, hs, ws, :] == y) & ~taken
        taken |= hit
        dxp[:, hs, ws, :] += dy * hit
    return _crop(xp, dxp, pads, x_shape[1], x_shape[2])


def _cell_counts(xp, x_shape, pool_size, strides, padding, dtype):
    """(OH, OW, 1) number of real cells per window, to divide sums by."""
    (_, H, W, _), (ph, pw), (sh, sw) = x_shape, pool_size, strides
    counts = real_cells(H, ph, sh, padding)[:, None] * real_cells(W, pw, sw, padding)[None, :]
    return xp.asarray(counts[:, :, None], dtype=dtype)


def avgpool2d_forward(x, pool_size, strides, padding):
    """Window sums (zeros in the padding) divided by the number of real cells.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (x.shape, pool_size, strides, padding).
    """
    xp = get_array_module(x)
    ph, pw = pool_size
    OH, OW, *pads = conv_geometry(x.shape, ph, pw, strides, padding)
    xpad = pad_images(xp, x, pads)
    y = None
    for _, _, hs, ws in window_offsets(ph, pw, strides, OH, OW):
        y = xpad[:, hs, ws, :].copy() if y is None else xp.add(y, xpad[:, hs, ws, :], out=y)
    y /= _cell_counts(xp, x.shape, pool_size, strides, padding, x.dtype)
    return y, (x.shape, pool_size, strides, padding)


def avgpool2d_backward(dy, cache):
    """Each window cell gets ``dy / cells``; overlapping windows add up.

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    x_shape, pool_size, strides, padding = cache
    xp = get_array_module(dy)
    N, H, W, C = x_shape
    ph, pw = pool_size
    OH, OW, *pads = conv_geometry(x_shape, ph, pw, strides, padding)
    pt, pb, pl, pr = pads
    g = dy / _cell_counts(xp, x_shape, pool_size, strides, padding, dy.dtype)
    dxp = xp.zeros((N, H + pt + pb, W + pl + pr, C), dtype=dy.dtype)
    for _, _, hs, ws in window_offsets(ph, pw, strides, OH, OW):
        dxp[:, hs, ws, :] += g
    return _crop(xp, dxp, pads, H, W)
