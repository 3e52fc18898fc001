"""3x3 convolutions with Winograd's minimal filtering F(2x2, 3x3): 2.25x fewer multiplies.

A 2x2 block of outputs of a 3x3 convolution needs 2*2*9 = 36 multiplies per channel
pair the direct way (and through im2col). Winograd's algorithm gets the same four sums
from 16: move the 4x4 input patch under the block and the 3x3 kernel into a "transformed"
4x4 space (``B^T d B`` and ``G g G^T``, only additions and halvings), multiply the two
elementwise there, and come back (``A^T m A``, additions again):

    y_block = A^T [ (G g G^T) * (B^T d B) ] A

Summed over the input channels, each of the 16 elementwise products becomes one matrix
product, (tiles, C_in) x (C_in, C_out), which BLAS runs at its full rate. The transforms
read and write each value a few times with additions only; the loops below run them
block by block, on a few images at a time, so that the transformed tiles are still in the
CPU's cache when the products read them. (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016, derive the matrices.)

The two gradients are Winograd convolutions too:

* the input gradient of a stride-1 convolution is the convolution of dy with the kernel
  turned by 180 degrees, its input and output channels swapped, and ``2 - pad`` zeros
  around dy: the same forward code;
* the kernel gradient follows by running the forward formula backwards: with
  ``Z = A dy_block A^T`` (each 2x2 block of dy taken into the 4x4 space), the transformed
  kernel's gradient is ``sum over tiles of V^T Z`` (16 products again) and the kernel's
  is ``G^T dU G``.

Sums come out in another order than the direct way, and the transforms add and subtract
neighbouring inputs first: float32 results differ from im2col's by a few units in the
last place of the largest values (tests compare both against the naive loops).

Used for 3x3 kernels at stride 1 with at least MIN_CHANNELS channels in and out
(``worth_it``). Measured, forward + backward, batch 128, float32, 2-core AMD EPYC, in
alternating runs against the im2col path: Fashion conv2 (13x13x32 -> 64, valid) 17.7-17.9
ms against 22.7-23.8 on one thread; model 2's conv2 (14x14x32 -> 64, same) 23.9-28.0
against 36.7 on one. The transforms take about a third of that time, the 16 products the rest (at
90-110 GFLOP/s on one core, about BLAS's peak for these shapes).
"""
import numba
import numpy as np
from numba import njit

from ._budget import get_im2col_budget, note_col
from ._gemm import run_chunks, single_threaded_blas
from ._numba_loops import CACHE
from ._shapes import conv_geometry
from ._threading import available_cores, even_chunks

#: The transforms (Lavin and Gray's F(2x2, 3x3)): input B^T (4x4), kernel G (4x3), output A^T (2x4).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])

#: Fewer channels than this on either side, and the 16 products are too thin for BLAS.
MIN_CHANNELS = 16
#: The 2x2 tiles cover an output of odd size and a bit more; the outputs beyond it are
#: computed and dropped. Above this share of extra outputs, im2col is as fast: model 2's
#: conv3 (5x5 outputs, 6x6 computed, 1.44) took 16.1 ms forward + backward against
#: im2col's 16.5 (one thread, batch 128); Fashion conv2 (11x11 in 12x12, 1.19) gains.
MAX_COVER = 1.25
#: A block's transformed tiles take about this many bytes, so that they are still in
#: the core's cache when the products read them. Measured, one thread, Fashion conv2
#: forward + backward: 0.5 MiB 22.3 ms, 1 MiB 19.9, 2 MiB 18.0, 4 MiB 23.6.
BLOCK_BYTES = 2 << 20


def worth_it(x_shape, kernel_shape, strides, padding):
    """Whether a convolution of these shapes goes through Winograd: a 3x3 kernel at stride
    1, at least MIN_CHANNELS channels in and out, and not much more output computed than
    kept (MAX_COVER)."""
    kh, kw, C_in, C_out = kernel_shape
    if (kh, kw) != (3, 3) or tuple(strides) != (1, 1) or min(C_in, C_out) < MIN_CHANNELS:
        return False
    OH, OW, *_ = conv_geometry(x_shape, 3, 3, (1, 1), padding)
    return 4 * -(-OH // 2) * -(-OW // 2) <= MAX_COVER * OH * OW


def conv2d_forward(x, kernel, padding):
    """y = x * kernel (stride 1, no bias).

    Shapes:
        x: (N, H, W, C_in).  kernel: (3, 3, C_in, C_out).  Returns y: (N, OH, OW, C_out).
    """
    OH, OW, pt, _, pl, _ = conv_geometry(x.shape, 3, 3, (1, 1), padding)
    return _convolve(x, kernel, pt, pl, OH, OW)


def conv2d_backward(dy, x, kernel, padding, need_dx=True):
    """(dx or None, dkernel) of conv2d_forward: the forward formula run backwards, block by
    block of images. Z = A g A^T takes each 2x2 block g of dy into the 4x4 space; there
    the kernel's gradient is dU = sum over tiles of V^T Z and the tiles' is Z U^T, which
    ``B (.) B^T`` takes back to 4x4 patches of the input, added up where they overlap.

    Shapes:
        dy: (N, OH, OW, C_out).  x: (N, H, W, C_in).  kernel: (3, 3, C_in, C_out).
    """
    N, OH, OW, C_out = dy.shape
    C_in = x.shape[3]
    _, _, pt, _, pl, _ = conv_geometry(x.shape, 3, 3, (1, 1), padding)
    TH, TW = -(-OH // 2), -(-OW // 2)
    # contiguous: BLAS ran the products 1.6x slower with the transposed view
    U_T = np.ascontiguousarray(transformed_kernel(kernel).transpose(0, 2, 1)) if need_dx else None
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    per_image = TH * TW * 16 * (2 * C_in + C_out) * x.dtype.itemsize
    blocks = _blocks(N, per_image)
    dU = np.empty((len(blocks), 16, C_in, C_out), dtype=x.dtype)

    def block(i, lo, hi):
        tiles = (hi - lo) * TH * TW
        V_buffer, V = _tile_matrices(tiles, C_in, x.dtype)
        input_tiles_loop(x[lo:hi], pt, pl, TH, TW, V_buffer)
        Z_buffer, Z = _tile_matrices(tiles, C_out, x.dtype)
        gradient_tiles_loop(dy[lo:hi], TH, TW, Z_buffer)
        np.matmul(V.transpose(0, 2, 1), Z, out=dU[i])
        if need_dx:
            dV = np.empty((V.shape[1], 16, C_in), dtype=x.dtype)
            np.matmul(Z, U_T, out=dV.transpose(1, 0, 2))
            input_gradient_loop(dV, pt, pl, TH, TW, dx[lo:hi])
    _in_blocks(block, blocks, per_image)
    dU = dU.sum(axis=0).reshape(4, 4, C_in, C_out)      # in block order at any thread count
    return dx, np.einsum("ai,abcf,bj->ijcf", G, dU, G, optimize=True).astype(x.dtype)


def transformed_kernel(kernel):
    """U = G g G^T for every (input, output) channel pair, as 16 matrices.

    Shapes: kernel: (3, 3, C_in, C_out).  Returns U: (16, C_in, C_out).
    """
    U = np.einsum("ai,ijcf,bj->abcf", G.astype(kernel.dtype), kernel, G.astype(kernel.dtype),
                  optimize=True)
    return U.reshape(16, *kernel.shape[2:])


def _convolve(x, kernel, pt, pl, OH, OW):
    """y[n, oh, ow] = sum over the 3x3 window at (oh - pt, ow - pl) of x (zeros outside)
    times kernel, block by block of images; OH, OW: the output's size."""
    N, C_in, C_out = x.shape[0], kernel.shape[2], kernel.shape[3]
    TH, TW = -(-OH // 2), -(-OW // 2)
    U = transformed_kernel(kernel)
    y = np.empty((N, OH, OW, C_out), dtype=x.dtype)

    def block(_, lo, hi):
        V_buffer, V = _tile_matrices((hi - lo) * TH * TW, C_in, x.dtype)
        input_tiles_loop(x[lo:hi], pt, pl, TH, TW, V_buffer)
        M = np.empty((V.shape[1], 16, C_out), dtype=x.dtype)
        np.matmul(V, U, out=M.transpose(1, 0, 2))
        output_tiles_loop(M, TH, TW, y[lo:hi])
    per_image = TH * TW * 16 * (C_in + C_out) * x.dtype.itemsize
    _in_blocks(block, _blocks(N, per_image), per_image)
    return y


def _blocks(N, bytes_per_image):
    """Blocks of images, each about BLOCK_BYTES of transformed tiles (less when the im2col
    budget, which these buffers share, is smaller), evenly shared out by the cores."""
    block_bytes = min(BLOCK_BYTES, get_im2col_budget() // available_cores())
    return even_chunks(N, int(max(1, min(N, block_bytes // bytes_per_image))))


def _in_blocks(work, blocks, bytes_per_image):
    """``work(i, lo, hi)`` for every block of images, the blocks shared between the
    threads, BLAS on one thread in each."""
    threads = max(1, min(numba.get_num_threads(), len(blocks)))
    note_col(threads * max(hi - lo for lo, hi in blocks) * bytes_per_image)
    with single_threaded_blas():
        run_chunks(work, blocks, threads)


def _tile_matrices(rows, cols, dtype):
    """``(buffer, matrices)``: 16 matrices of (rows, cols), each contiguous, one cache line
    apart in ``buffer`` (16, rows*cols + gap). Matrices laid end to end would start a
    multiple of 4 KiB apart for many shapes, and the loops that write one value into each
    of the 16 in turn then thrash the cache (the input transform of Fashion conv2 ran 7x
    slower). The loops take ``buffer``, whose layout Numba knows, so that they vectorise."""
    gap = 64 // np.dtype(dtype).itemsize
    buffer = np.empty((16, rows * cols + gap), dtype=dtype)
    return buffer, buffer[:, :rows * cols].reshape(16, rows, cols)


@njit(cache=CACHE, nogil=True, error_model="numpy")
def input_tiles_loop(x, pt, pl, TH, TW, V):
    """V[:, t*C + c] = B^T d B, d the 4x4 patch of image n at rows 2*th - pt ..., columns
    2*tw - pl ... (zeros outside the image), tile t = (n*TH + th)*TW + tw.

    Shapes: x: (N, H, W, C).  V: (16, >= N*TH*TW*C), entry 4*r + q = row r, column q.
    """
    N, H, W, C = x.shape
    padded = np.zeros((2 * TH + 2, 2 * TW + 2, C), dtype=x.dtype)   # the borders stay zero
    rows, cols = min(H, 2 * TH + 2 - pt), min(W, 2 * TW + 2 - pl)
    for n in range(N):
        padded[pt:pt + rows, pl:pl + cols] = x[n, :rows, :cols]
        for th in range(TH):
            for tw in range(TW):
                top, left, tc = 2 * th, 2 * tw, ((n * TH + th) * TW + tw) * C
                for c in range(C):
                    # B^T d: combine the patch's rows ...
                    e00 = padded[top + 0, left + 0, c] - padded[top + 2, left + 0, c]
                    e01 = padded[top + 0, left + 1, c] - padded[top + 2, left + 1, c]
                    e02 = padded[top + 0, left + 2, c] - padded[top + 2, left + 2, c]
                    e03 = padded[top + 0, left + 3, c] - padded[top + 2, left + 3, c]
                    e10 = padded[top + 1, left + 0, c] + padded[top + 2, left + 0, c]
                    e11 = padded[top + 1, left + 1, c] + padded[top + 2, left + 1, c]
                    e12 = padded[top + 1, left + 2, c] + padded[top + 2, left + 2, c]
                    e13 = padded[top + 1, left + 3, c] + padded[top + 2, left + 3, c]
                    e20 = padded[top + 2, left + 0, c] - padded[top + 1, left + 0, c]
                    e21 = padded[top + 2, left + 1, c] - padded[top + 1, left + 1, c]
                    e22 = padded[top + 2, left + 2, c] - padded[top + 1, left + 2, c]
                    e23 = padded[top + 2, left + 3, c] - padded[top + 1, left + 3, c]
                    e30 = padded[top + 1, left + 0, c] - padded[top + 3, left + 0, c]
                    e31 = padded[top + 1, left + 1, c] - padded[top + 3, left + 1, c]
                    e32 = padded[top + 1, left + 2, c] - padded[top + 3, left + 2, c]
                    e33 = padded[top + 1, left + 3, c] - padded[top + 3, left + 3, c]
                    # ... then (B^T d) B: the same combination of its columns
                    V[0, tc + c], V[1, tc + c] = e00 - e02, e01 + e02
                    V[2, tc + c], V[3, tc + c] = e02 - e01, e01 - e03
                    V[4, tc + c], V[5, tc + c] = e10 - e12, e11 + e12
                    V[6, tc + c], V[7, tc + c] = e12 - e11, e11 - e13
                    V[8, tc + c], V[9, tc + c] = e20 - e22, e21 + e22
                    V[10, tc + c], V[11, tc + c] = e22 - e21, e21 - e23
                    V[12, tc + c], V[13, tc + c] = e30 - e32, e31 + e32
                    V[14, tc + c], V[15, tc + c] = e32 - e31, e31 - e33


@njit(cache=CACHE, nogil=True, error_model="numpy")
def output_tiles_loop(M, TH, TW, y):
    """y's 2x2 block (th, tw) of image n = A^T m A, m = M[t] (the block's part beyond
    y's edge is dropped).

    Shapes: M: (N*TH*TW, 16, C_out), tile t = (n*TH + th)*TW + tw.  y: (N, OH, OW, C_out).
    """
    N, OH, OW, C = y.shape
    for n in range(N):
        for th in range(TH):
            for tw in range(TW):
                m = M[(n * TH + th) * TW + tw]
                i, j = 2 * th, 2 * tw
                for c in range(C):
                    # A^T m: rows 0+1+2 and 1-2-3 of m ...
                    a0 = m[0, c] + m[4, c] + m[8, c]
                    a1 = m[1, c] + m[5, c] + m[9, c]
                    a2 = m[2, c] + m[6, c] + m[10, c]
                    a3 = m[3, c] + m[7, c] + m[11, c]
                    b0 = m[4, c] - m[8, c] - m[12, c]
                    b1 = m[5, c] - m[9, c] - m[13, c]
                    b2 = m[6, c] - m[10, c] - m[14, c]
                    b3 = m[7, c] - m[11, c] - m[15, c]
                    # ... then the same combination of the columns
                    y[n, i, j, c] = a0 + a1 + a2
                    if j + 1 < OW:
                        y[n, i, j + 1, c] = a1 - a2 - a3
                    if i + 1 < OH:
                        y[n, i + 1, j, c] = b0 + b1 + b2
                        if j + 1 < OW:
                            y[n, i + 1, j + 1, c] = b1 - b2 - b3


@njit(cache=CACHE, nogil=True, error_model="numpy")
def gradient_tiles_loop(dy, TH, TW, Z):
    """Z[:, t*C + c] = A g A^T, g the 2x2 block (th, tw) of dy's image n (zeros beyond its
    edge): the output transform run backwards.

    Shapes: dy: (N, OH, OW, C).  Z: (16, >= N*TH*TW*C), tile t = (n*TH + th)*TW + tw.
    """
    N, OH, OW, C = dy.shape
    zero = dy.dtype.type(0)
    for n in range(N):
        for th in range(TH):
            for tw in range(TW):
                i, j, tc = 2 * th, 2 * tw, ((n * TH + th) * TW + tw) * C
                right, below = j + 1 < OW, i + 1 < OH
                for c in range(C):
                    g00 = dy[n, i, j, c]
                    g01 = dy[n, i, j + 1, c] if right else zero
                    g10 = dy[n, i + 1, j, c] if below else zero
                    g11 = dy[n, i + 1, j + 1, c] if right and below else zero
                    # A g: rows g0, g0 + g1, g0 - g1, -g1 ...
                    h = ((g00, g01), (g00 + g10, g01 + g11), (g00 - g10, g01 - g11), (-g10, -g11))
                    for r in range(4):
                        # ... and the same of each row's two columns
                        Z[4 * r, tc + c] = h[r][0]
                        Z[4 * r + 1, tc + c] = h[r][0] + h[r][1]
                        Z[4 * r + 2, tc + c] = h[r][0] - h[r][1]
                        Z[4 * r + 3, tc + c] = -h[r][1]


@njit(cache=CACHE, nogil=True, error_model="numpy")
def input_gradient_loop(dV, pt, pl, TH, TW, dx):
    """dx = the sum over tiles of B dv B^T, dv = dV[t] as a 4x4 patch, added in at the
    patch's place (the input transform run backwards; neighbouring patches overlap by two
    rows or columns). The part of a patch in the padding is dropped.

    Shapes: dV: (N*TH*TW, 16, C), tile t = (n*TH + th)*TW + tw.  dx: (N, H, W, C).
    """
    N, H, W, C = dx.shape
    padded = np.empty((2 * TH + 2, 2 * TW + 2, C), dtype=dx.dtype)
    rows, cols = min(H, 2 * TH + 2 - pt), min(W, 2 * TW + 2 - pl)
    dx[:, rows:] = 0                  # never in a window (not with 3x3 at stride 1)
    dx[:, :, cols:] = 0
    for n in range(N):
        padded[...] = 0
        for th in range(TH):
            for tw in range(TW):
                v = dV[(n * TH + th) * TW + tw]
                top, left = 2 * th, 2 * tw
                for c in range(C):
                    # B v: combine the rows of the 4x4 v (v0, v1 - v2 + v3, v1 + v2 - v0, -v3) ...
                    w00, w01, w02, w03 = v[0, c], v[1, c], v[2, c], v[3, c]
                    w10 = v[4, c] - v[8, c] + v[12, c]
                    w11 = v[5, c] - v[9, c] + v[13, c]
                    w12 = v[6, c] - v[10, c] + v[14, c]
                    w13 = v[7, c] - v[11, c] + v[15, c]
                    w20 = v[4, c] + v[8, c] - v[0, c]
                    w21 = v[5, c] + v[9, c] - v[1, c]
                    w22 = v[6, c] + v[10, c] - v[2, c]
                    w23 = v[7, c] + v[11, c] - v[3, c]
                    w30, w31, w32, w33 = -v[12, c], -v[13, c], -v[14, c], -v[15, c]
                    # ... then the same combination of the columns, added into the patch
                    padded[top + 0, left + 0, c] += w00
                    padded[top + 0, left + 1, c] += w01 - w02 + w03
                    padded[top + 0, left + 2, c] += w01 + w02 - w00
                    padded[top + 0, left + 3, c] -= w03
                    padded[top + 1, left + 0, c] += w10
                    padded[top + 1, left + 1, c] += w11 - w12 + w13
                    padded[top + 1, left + 2, c] += w11 + w12 - w10
                    padded[top + 1, left + 3, c] -= w13
                    padded[top + 2, left + 0, c] += w20
                    padded[top + 2, left + 1, c] += w21 - w22 + w23
                    padded[top + 2, left + 2, c] += w21 + w22 - w20
                    padded[top + 2, left + 3, c] -= w23
                    padded[top + 3, left + 0, c] += w30
                    padded[top + 3, left + 1, c] += w31 - w32 + w33
                    padded[top + 3, left + 2, c] += w31 + w32 - w30
                    padded[top + 3, left + 3, c] -= w33
        dx[n, :rows, :cols] = padded[pt:pt + rows, pl:pl + cols]
