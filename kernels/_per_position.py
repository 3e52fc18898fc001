"""Convolution of small images one output position at a time, skipping the padding.

With "same" padding on an image not much larger than the window, most of the im2col
matrix is padding: LeNet's conv3 (5x5 on 4x4 images) and AlexNet's conv2 have 51% zeros
in their col matrix, its conv3-5 (3x3 on 2x2) 56%, and a product with the col matrix
spends that share of its time multiplying zeros. Here each output position (oh, ow) is
computed on its own, from the window rows that lie inside the image: for window row i,
the input pixels x[:, h, w0:w1, :] and the kernel's row kernel[i, j0:j1] are both plain
(strided) views, so each piece is one BLAS product with no copy and no zero in it.

That is many small products (LeNet conv3: 56 per pass), which BLAS runs at near its peak
for these sizes (64 x 64 x 120: 98 GFLOP/s on one AMD EPYC core) but each call costs a
few microseconds, so ``worth_it`` takes this path only for few output positions and a
large share of padding. The NumPy and naive kernels give the same sums (in another order).
"""
import functools

import numpy as np

from ._gemm import run_chunks, single_threaded_blas
from ._shapes import conv_geometry, inside_cells

try:
    import numba
except ImportError:
    numba = None

#: At most this many output positions (per image): each costs kh products per pass.
MAX_POSITIONS = 16
#: ... and at least this share of the col matrix must be padding to be worth the calls.
MIN_PADDING_SHARE = 0.25
#: Threads share out the output positions (each computes its positions for the whole
#: batch, so every product keeps all the batch's rows), and only when each piece is large
#: enough to outweigh the extra calls: LeNet conv3's pieces (0.9 MFLOP) ran slower on two
#: threads (forward 0.97 against 0.71 ms on one), AlexNet conv2's (11 MFLOP) faster (4.3
#: against 7.3 ms). Split by positions rather than by images (each product keeps 64 rows
#: instead of 32), AlexNet conv2-5 on two threads, forward / backward in a traced training
#: step, two alternating runs: conv2 4.5-4.7 / 11.4-11.5 -> 4.0-4.1 / 9.3-9.6 ms, conv3
#: 1.8 / 4.3-4.4 -> 1.5 / 3.5-3.9, conv4 2.5 / 6.4 -> 2.1 / 5.3-5.6, conv5 1.7-1.8 / 4.5-4.8
#: -> 1.4-1.5 / 3.8-4.1.
MIN_PIECE_FLOPS_PER_THREAD = 2_000_000


def _pieces(x_shape, kernel_shape, strides, padding):
    """(((oh, ow), ((h, w0, w1, i, j0), ...)), ...): for each output position, the window
    rows inside the image: image row h, columns w0:w1, window row i, from window column j0."""
    return _pieces_of(*x_shape[1:3], *kernel_shape[:2], *strides, padding)


@functools.lru_cache(maxsize=64)
def _pieces_of(H, W, kh, kw, sh, sw, padding):
    """_pieces, worked out once per geometry (a training step asks for it four times)."""
    OH, OW, pt, _, pl, _ = conv_geometry((1, H, W, 1), kh, kw, (sh, sw), padding)
    positions = []
    for oh in range(OH):
        for ow in range(OW):
            top, left = oh * sh - pt, ow * sw - pl
            w0, w1 = max(left, 0), min(left + kw, W)
            rows = tuple((top + i, w0, w1, i, w0 - left) for i in range(kh) if 0 <= top + i < H)
            positions.append(((oh, ow), rows))
    return tuple(positions)


def worth_it(x_shape, kernel_shape, strides, padding):
    """Whether a convolution of these shapes should go by output position (see above).

    Not when its pieces are too small to share between the threads there are: the
    im2col path then splits its one large product instead, and wins (LeNet conv3 on two
    threads: 2.0 against 2.4 ms forward and backward).
    """
    kh, kw = kernel_shape[:2]
    OH, OW, *_ = conv_geometry(x_shape, kh, kw, strides, padding)
    if OH * OW > MAX_POSITIONS:
        return False
    if 1 - inside_cells(x_shape, kh, kw, strides, padding) / (OH * OW * kh * kw) < MIN_PADDING_SHARE:
        return False
    positions = _pieces(x_shape, kernel_shape, strides, padding)
    return _available_threads() == 1 or _threads_for(x_shape, kernel_shape, positions) > 1


def _available_threads():
    return numba.get_num_threads() if numba else 1


def _threads_for(x_shape, kernel_shape, positions):
    """How many threads share the output positions: at most one per position, each with
    products of at least MIN_PIECE_FLOPS_PER_THREAD on average."""
    N, C_in, C_out = x_shape[0], kernel_shape[2], kernel_shape[3]
    widths = [w1 - w0 for _, rows in positions for _, w0, w1, _, _ in rows]
    piece_flops = 2 * N * C_in * C_out * sum(widths) / len(widths)
    return int(max(1, min(_available_threads(), len(positions), piece_flops // MIN_PIECE_FLOPS_PER_THREAD)))


def conv2d_forward(x, kernel, strides, padding):
    """y = x * kernel (no bias), a sum of one product per window row inside the image.

    Shapes:
        x: (N, H, W, C_in).  kernel: (kh, kw, C_in, C_out).  Returns y: (N, OH, OW, C_out).
    """
    kh, kw, _, C_out = kernel.shape
    OH, OW, *_ = conv_geometry(x.shape, kh, kw, strides, padding)
    y = np.empty((len(x), OH, OW, C_out), dtype=x.dtype)
    positions = _pieces(x.shape, kernel.shape, strides, padding)

    N = len(x)

    def forward_positions(_, first, last):
        total, part = np.empty((2, N, C_out), dtype=x.dtype)
        for (oh, ow), rows in positions[first:last]:
            total[...] = 0
            for h, w0, w1, i, j0 in rows:
                pixels = x[:, h, w0:w1, :].reshape(N, -1)                  # (N, (w1-w0)·C_in)
                weights = kernel[i, j0:j0 + w1 - w0].reshape(-1, C_out)    # ((w1-w0)·C_in, C_out)
                total += np.matmul(pixels, weights, out=part)
            y[:, oh, ow, :] = total
    _in_position_groups(forward_positions, x.shape, kernel.shape, positions)
    return y


def conv2d_backward(dy, x, kernel, strides, padding, need_dx=True):
    """(dx or None, dkernel): each piece of the forward pass sends dy back through its
    own product, into its window row of dkernel and its pixels of dx.

    Shapes:
        dy: (N, OH, OW, C_out).  x: (N, H, W, C_in).  kernel: (kh, kw, C_in, C_out).
    """
    C_in, C_out = kernel.shape[2:]
    positions = _pieces(x.shape, kernel.shape, strides, padding)
    N = len(x)

    def backward_positions(_, first, last):
        """(dx, dkernel) of these positions alone: neighbouring windows share pixels
        and kernel cells, so each group sums into arrays of its own."""
        dx, dkernel = (np.zeros_like(x) if need_dx else None), np.zeros_like(kernel)
        for (oh, ow), rows in positions[first:last]:
            g = np.ascontiguousarray(dy[:, oh, ow, :])                     # (N, C_out)
            for h, w0, w1, i, j0 in rows:
                width = w1 - w0
                pixels = x[:, h, w0:w1, :].reshape(N, -1)
                dkernel[i, j0:j0 + width] += (pixels.T @ g).reshape(width, C_in, C_out)
                if need_dx:
                    weights = kernel[i, j0:j0 + width].reshape(-1, C_out)
                    dx[:, h, w0:w1, :] += (g @ weights.T).reshape(N, width, C_in)
        return dx, dkernel
    (dx, dkernel), *others = _in_position_groups(backward_positions, x.shape, kernel.shape, positions)
    for other_dx, other_dkernel in others:       # in group order
        dkernel += other_dkernel
        if need_dx:
            dx += other_dx
    return dx, dkernel


def _in_position_groups(work, x_shape, kernel_shape, positions):
    """``work(i, first, last)`` on groups of consecutive output positions, each group on
    its own thread (with single-threaded BLAS) and about the same number of products'
    columns in each; returns the results in group order."""
    threads = _threads_for(x_shape, kernel_shape, positions)
    widths = np.cumsum([sum(w1 - w0 for _, w0, w1, _, _ in rows) for _, rows in positions])
    cuts = [int(np.searchsorted(widths, widths[-1] * t / threads)) + 1 for t in range(1, threads)]
    edges = [0, *cuts, len(positions)]
    results = [None] * threads

    def keep(i, first, last):
        results[i] = work(i, first, last)
    with single_threaded_blas():
        run_chunks(keep, list(zip(edges[:-1], edges[1:])), threads)
    return results
