"""Convolution and pooling written as plain loops: the definitions to read first.

Every other implementation (``numpy_kernels``, ``numba_kernels``) must give the same
numbers as this file; the tests check that. Nothing here is meant to be fast.

Layout contract (shared by all twins):

* Images are NHWC ``(N, H, W, C)``; conv kernels are ``(kh, kw, C_in, C_out)`` as in Keras.
* ``im2col`` returns ``(N*OH*OW, kh*kw*C)``: one row per output pixel, rows in
  ``(n, oh, ow)`` order, columns in ``(i, j, c)`` order, so
  ``col @ kernel.reshape(-1, C_out)`` is already the NHWC output.
* ``col2im`` is the adjoint of ``im2col``: it adds every column entry back onto the
  pixel it was copied from (overlapping windows add up).
* Max-pool ties: the gradient goes to the FIRST maximum in row-major window order
  (row ``i`` first, then column ``j``). Padded cells never win a max and are never
  counted in an average.
"""
import numpy as np

from ._shapes import conv_geometry

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"]


def _pad(x, pads, value=0.0):
    """Surround the H and W axes with ``value`` (``pads`` = top, bottom, left, right)."""
    pt, pb, pl, pr = pads
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def im2col(x, kh, kw, strides, padding):
    """Copy every ``kh x kw`` window of ``x`` into one row of a matrix.

    Shapes:
        x: (N, H, W, C).  Returns col: (N*OH*OW, kh*kw*C).
    """
    N, _, _, C = x.shape
    OH, OW, *pads = conv_geometry(x.shape, kh, kw, strides, padding)
    sh, sw = strides
    x_pad = _pad(x, pads)
    col = np.zeros((N * OH * OW, kh * kw * C), dtype=x.dtype)
    row = 0
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                window = x_pad[n, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw, :]
                col[row] = window.reshape(-1)
                row += 1
    return col


def col2im(col, x_shape, kh, kw, strides, padding):
    """Add each row of ``col`` back onto the window it came from (adjoint of im2col).

    Shapes:
        col: (N*OH*OW, kh*kw*C).  x_shape: (N, H, W, C).  Returns dx: x_shape.
    """
    N, H, W, C = x_shape
    OH, OW, pt, pb, pl, pr = conv_geometry(x_shape, kh, kw, strides, padding)
    sh, sw = strides
    dx_pad = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=col.dtype)
    row = 0
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                dx_pad[n, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw, :] += col[row].reshape(kh, kw, C)
                row += 1
    return dx_pad[:, pt:pt + H, pl:pl + W, :].copy()


def conv2d_forward(x, kernel, bias, strides, padding):
    """2-D convolution (cross-correlation, as in every DL library), one window at a time.

    ``y[n, oh, ow, co] = sum_{i,j,c} xpad[n, oh*sh+i, ow*sw+j, c] * kernel[i, j, c, co] + bias[co]``

    Shapes:
        x: (N, H, W, C_in).  kernel: (kh, kw, C_in, C_out).  bias: (C_out,) or None.
        Returns y: (N, OH, OW, C_out).
    Cache: (x, kernel, has_bias, strides, padding).
    """
    kh, kw, _, C_out = kernel.shape
    kernel = kernel.astype(x.dtype, copy=False)
    N = x.shape[0]
    OH, OW, *pads = conv_geometry(x.shape, kh, kw, strides, padding)
    sh, sw = strides
    x_pad = _pad(x, pads)
    y = np.zeros((N, OH, OW, C_out), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                window = x_pad[n, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw, :]
                # Dot the (kh, kw, C_in) window with each filter: one number per C_out.
                y[n, oh, ow] = np.tensordot(window, kernel, axes=3)
    if bias is not None:
        y += bias.astype(x.dtype, copy=False)
    return y, (x, kernel, bias is not None, strides, padding)


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of conv2d_forward, by sending each output's gradient back to its window.

    ``need_dx=False`` skips the input gradient (dx is None): a model's first layer has
    no layer below it to pass dx to.

    Shapes:
        dy: (N, OH, OW, C_out).  Returns dx: (N, H, W, C_in), dkernel: (kh, kw, C_in, C_out),
        dbias: (C_out,) or None.
    """
    x, kernel, has_bias, strides, padding = cache
    kh, kw, _, _ = kernel.shape
    N, H, W, _ = x.shape
    OH, OW, pt, pb, pl, pr = conv_geometry(x.shape, kh, kw, strides, padding)
    sh, sw = strides
    x_pad = _pad(x, (pt, pb, pl, pr))
    dx_pad = np.zeros_like(x_pad)
    dkernel = np.zeros_like(kernel)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                hs, ws = slice(oh * sh, oh * sh + kh), slice(ow * sw, ow * sw + kw)
                g = dy[n, oh, ow]                       # (C_out,)
                if need_dx:
                    dx_pad[n, hs, ws, :] += kernel @ g     # each input in the window fed every filter
                dkernel += x_pad[n, hs, ws, :, None] * g   # each weight saw this window's pixel
    dbias = dy.sum(axis=(0, 1, 2)) if has_bias else None
    dx = dx_pad[:, pt:pt + H, pl:pl + W, :].copy() if need_dx else None
    return dx, dkernel, dbias


def _pool_setup(x, pool_size, strides, padding, fill):
    ph, pw = pool_size
    OH, OW, *pads = conv_geometry(x.shape, ph, pw, strides, padding)
    return OH, OW, pads, _pad(x, pads, fill)


def maxpool2d_forward(x, pool_size, strides, padding):
    """Largest value in each window, per channel. Padded cells are -inf so they never win.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (x, pool_size, strides, padding).
    """
    N, _, _, C = x.shape
    ph, pw = pool_size
    sh, sw = strides
    OH, OW, _, x_pad = _pool_setup(x, pool_size, strides, padding, -np.inf)
    y = np.empty((N, OH, OW, C), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                y[n, oh, ow] = x_pad[n, oh * sh:oh * sh + ph, ow * sw:ow * sw + pw, :].max(axis=(0, 1))
    return y, (x, pool_size, strides, padding)


def maxpool2d_backward(dy, cache):
    """Route each output's gradient to the first maximum of its window (row-major order).

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    x, pool_size, strides, padding = cache
    N, H, W, C = x.shape
    ph, pw = pool_size
    sh, sw = strides
    OH, OW, (pt, _, pl, _), x_pad = _pool_setup(x, pool_size, strides, padding, -np.inf)
    dx_pad = np.zeros(x_pad.shape, dtype=dy.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                window = x_pad[n, oh * sh:oh * sh + ph, ow * sw:ow * sw + pw, :].reshape(-1, C)
                first = window.argmax(axis=0)   # argmax returns the first of equal maxima
                for c in range(C):
                    i, j = divmod(int(first[c]), pw)
                    dx_pad[n, oh * sh + i, ow * sw + j, c] += dy[n, oh, ow, c]
    return dx_pad[:, pt:pt + H, pl:pl + W, :].copy()


def avgpool2d_forward(x, pool_size, strides, padding):
    """Mean of each window over its real (non-padded) cells, per channel, as Keras does.

    Shapes:
        x: (N, H, W, C).  Returns y: (N, OH, OW, C).
    Cache: (x.shape, pool_size, strides, padding).
    """
    N, H, W, C = x.shape
    ph, pw = pool_size
    sh, sw = strides
    OH, OW, pt, _, pl, _ = conv_geometry(x.shape, ph, pw, strides, padding)
    y = np.empty((N, OH, OW, C), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            h0, h1 = max(oh * sh - pt, 0), min(oh * sh - pt + ph, H)   # real rows only
            for ow in range(OW):
                w0, w1 = max(ow * sw - pl, 0), min(ow * sw - pl + pw, W)
                y[n, oh, ow] = x[n, h0:h1, w0:w1, :].mean(axis=(0, 1))
    return y, (x.shape, pool_size, strides, padding)


def avgpool2d_backward(dy, cache):
    """Share each output's gradient equally among the real cells of its window.

    Shapes:
        dy: (N, OH, OW, C).  Returns dx: (N, H, W, C).
    """
    x_shape, pool_size, strides, padding = cache
    N, H, W, C = x_shape
    ph, pw = pool_size
    sh, sw = strides
    OH, OW, pt, _, pl, _ = conv_geometry(x_shape, ph, pw, strides, padding)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for n in range(N):
        for oh in range(OH):
            h0, h1 = max(oh * sh - pt, 0), min(oh * sh - pt + ph, H)
            for ow in range(OW):
                w0, w1 = max(ow * sw - pl, 0), min(ow * sw - pl + pw, W)
                dx[n, h0:h1, w0:w1, :] += dy[n, oh, ow] / ((h1 - h0) * (w1 - w0))
    return dx
