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

The gradients run the same formula backwards (``conv2d_backward``), block by block:
each 2x2 block g of dy goes into the 4x4 space as ``Z = A g A^T``; there the transformed
kernel's gradient is the sum over tiles of ``V^T Z`` and the transformed tiles' is
``Z U^T`` (16 products each); ``G^T (.) G`` brings the first back to a 3x3 kernel, and
``B (.) B^T`` the second back to 4x4 patches of the input, added up where they overlap.

Sums come out in another order than the direct way, and the transforms add and subtract
neighbouring inputs before multiplying: float32 results differ from im2col's by rounding
(the tests hold them within 2e-5 of the largest value of the float64 naive result).

Used for 3x3 kernels at stride 1 with at least MIN_CHANNELS channels in and out
(``worth_it``). Measured, forward + backward, batch 128, float32, 2-core AMD EPYC, in
alternating runs against the im2col path: Fashion conv2 (13x13x32 -> 64, valid)
14.9-15.1 ms against 22.4-22.7 on one thread, 8.4-10.2 against 12.1-12.4 on two; model 2's
conv2 (14x14x32 -> 64, same) 20.2 against 36.2-36.7 on one, 11.1-11.7 against 19.0-20.5
on two. The 16 products run at 90-110 GFLOP/s on one core (about BLAS's peak for these
shapes); the transforms take about a quarter of the time.
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
#: computed and dropped. At most this many outputs computed per output kept: model 2's
#: conv3 (5x5 outputs, 6x6 computed: 1.44) still gains, 13.9 against im2col's 16.7 ms
#: forward + backward on one thread, 8.3 against 9.3 on two (batch 128).
MAX_COVER = 1.5
#: A block's transformed tiles take about this many bytes, so that they are still in
#: the core's cache when the products read them. Measured, one thread, forward +
#: backward: Fashion conv2 1 MiB 16.3 ms, 2 MiB 15.7-16.1, 4 MiB 16.8-18.0; model 2's
#: conv2 23.0-24.1, 21.0-21.6, 24.0.
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
    """y = x * kernel (stride 1, no bias), block by block of images.

    Shapes:
        x: (N, H, W, C_in).  kernel: (3, 3, C_in, C_out).  Returns y: (N, OH, OW, C_out).
    """
    N, C_in, C_out = x.shape[0], kernel.shape[2], kernel.shape[3]
    OH, OW, pt, _, pl, _ = conv_geometry(x.shape, 3, 3, (1, 1), padding)
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


def conv2d_backward(dy, x, kernel, padding, need_dx=True):
    """(dx or None, dkernel) of conv2d_forward: its formula run backwards, block by block
    of images (see the module's docstring).

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
    return dx, _sandwich(G.T, dU).astype(x.dtype)


def transformed_kernel(kernel):
    """U = G g G^T for every (input, output) channel pair, as 16 matrices.

    Shapes: kernel: (3, 3, C_in, C_out).  Returns U: (16, C_in, C_out).
    """
    return _sandwich(G.astype(kernel.dtype), kernel).reshape(16, *kernel.shape[2:])


def _sandwich(L, g):
    """L g L^T for each channel pair: out[a, b, c, f] = sum over i, j of L[a, i] g[i, j, c, f] L[b, j].

    Two tensordots (one BLAS product each): np.einsum with optimize=True found the same
    order but spent 0.15 ms searching for it on every call, 1 ms of a 2-thread
    Fashion-MNIST training step.
    Shapes: L: (m, k).  g: (k, k, C, F).  Returns (m, m, C, F).
    """
    rows_done = np.tensordot(L, g, axes=(1, 0))                # (a, j, c, f)
    return np.tensordot(L, rows_done, axes=(1, 1)).transpose(1, 0, 2, 3)


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


# The loops below combine whole channel vectors at a time, each combination one short
# loop with a single output: written out value by value, with sixteen outputs per loop,
# Numba could not vectorise them, and they ran 1.7x slower. One helper per number of
# terms, each sign 1 or -1 (exact): a two-term combination run as three, the third times
# 0, made the input transform 13% slower.

@njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _set1(out, a, sa):
    """out = sa*a, elementwise."""
    for i in range(out.shape[0]):
        out[i] = sa * a[i]


@njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _set2(out, a, b, sb):
    """out = a + sb*b, elementwise."""
    for i in range(out.shape[0]):
        out[i] = a[i] + sb * b[i]


@njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _set3(out, a, b, c, sb, sc):
    """out = a + sb*b + sc*c, elementwise."""
    for i in range(out.shape[0]):
        out[i] = a[i] + sb * b[i] + sc * c[i]


@njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _add1(out, a, sa):
    """out += sa*a, elementwise."""
    for i in range(out.shape[0]):
        out[i] += sa * a[i]


@njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _add3(out, a, b, c, sb, sc):
    """out += a + sb*b + sc*c, elementwise."""
    for i in range(out.shape[0]):
        out[i] += a[i] + sb * b[i] + sc * c[i]


@njit(cache=CACHE, nogil=True, error_model="numpy")
def input_tiles_loop(x, pt, pl, TH, TW, V):
    """V[:, t*C:(t+1)*C] = B^T d B, d the 4x4 patch of image n at rows 2*th - pt ...,
    columns 2*tw - pl ... (zeros outside the image), tile t = (n*TH + th)*TW + tw.

    Shapes: x: (N, H, W, C).  V: (16, >= N*TH*TW*C), entry 4*r + q = row r, column q.
    """
    N, H, W, C = x.shape
    one = x.dtype.type(1)
    # the image in a frame of zeros (the tiles' 2*TH + 2 rows reach at least H + pt at
    # stride 1); the borders stay zero from image to image
    padded = np.zeros((2 * TH + 2, 2 * TW + 2, C), dtype=x.dtype)
    e = np.empty((4, 4, C), dtype=x.dtype)
    for n in range(N):
        padded[pt:pt + H, pl:pl + W] = x[n]
        for th in range(TH):
            for tw in range(TW):
                d = padded[2 * th:2 * th + 4, 2 * tw:2 * tw + 4]
                t = ((n * TH + th) * TW + tw) * C
                for q in range(4):      # e = B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    _set2(e[0, q], d[0, q], d[2, q], -one)
                    _set2(e[1, q], d[1, q], d[2, q], one)
                    _set2(e[2, q], d[2, q], d[1, q], -one)
                    _set2(e[3, q], d[1, q], d[3, q], -one)
                for r in range(4):      # e B: the same combination of e's columns
                    _set2(V[4 * r, t:t + C], e[r, 0], e[r, 2], -one)
                    _set2(V[4 * r + 1, t:t + C], e[r, 1], e[r, 2], one)
                    _set2(V[4 * r + 2, t:t + C], e[r, 2], e[r, 1], -one)
                    _set2(V[4 * r + 3, t:t + C], e[r, 1], e[r, 3], -one)


@njit(cache=CACHE, nogil=True, error_model="numpy")
def output_tiles_loop(M, TH, TW, y):
    """y's 2x2 block (th, tw) of image n = A^T m A, m = M[t] (the block's part beyond
    y's edge is dropped).

    Shapes: M: (N*TH*TW, 16, C_out), tile t = (n*TH + th)*TW + tw.  y: (N, OH, OW, C_out).
    """
    N, OH, OW, C = y.shape
    one = y.dtype.type(1)
    a = np.empty((2, 4, C), dtype=y.dtype)
    for n in range(N):
        for th in range(TH):
            for tw in range(TW):
                m = M[(n * TH + th) * TW + tw]
                i, j = 2 * th, 2 * tw
                for q in range(4):      # a = A^T m: rows m0 + m1 + m2 and m1 - m2 - m3
                    _set3(a[0, q], m[q], m[4 + q], m[8 + q], one, one)
                    _set3(a[1, q], m[4 + q], m[8 + q], m[12 + q], -one, -one)
                for r in range(min(2, OH - i)):     # a A: the same of a's columns
                    _set3(y[n, i + r, j], a[r, 0], a[r, 1], a[r, 2], one, one)
                    if j + 1 < OW:
                        _set3(y[n, i + r, j + 1], a[r, 1], a[r, 2], a[r, 3], -one, -one)


@njit(cache=CACHE, nogil=True, error_model="numpy")
def gradient_tiles_loop(dy, TH, TW, Z):
    """Z[:, t*C:(t+1)*C] = A g A^T, g the 2x2 block (th, tw) of dy's image n (zeros beyond
    its edge): the output transform run backwards.

    Shapes: dy: (N, OH, OW, C).  Z: (16, >= N*TH*TW*C), tile t = (n*TH + th)*TW + tw.
    """
    N, OH, OW, C = dy.shape
    one = dy.dtype.type(1)
    g = np.empty((2, 2, C), dtype=dy.dtype)     # a block, zeros where it passes dy's edge
    h = np.empty((4, 2, C), dtype=dy.dtype)
    for n in range(N):
        for th in range(TH):
            for tw in range(TW):
                i, j, t = 2 * th, 2 * tw, ((n * TH + th) * TW + tw) * C
                rows, cols = min(2, OH - i), min(2, OW - j)
                if rows < 2 or cols < 2:
                    g[...] = 0
                g[:rows, :cols] = dy[n, i:i + rows, j:j + cols]
                for q in range(2):      # h = A g: rows g0, g0 + g1, g0 - g1, -g1
                    _set1(h[0, q], g[0, q], one)
                    _set2(h[1, q], g[0, q], g[1, q], one)
                    _set2(h[2, q], g[0, q], g[1, q], -one)
                    _set1(h[3, q], g[1, q], -one)
                for r in range(4):      # h A^T: the same of h's two columns
                    _set1(Z[4 * r, t:t + C], h[r, 0], one)
                    _set2(Z[4 * r + 1, t:t + C], h[r, 0], h[r, 1], one)
                    _set2(Z[4 * r + 2, t:t + C], h[r, 0], h[r, 1], -one)
                    _set1(Z[4 * r + 3, t:t + C], h[r, 1], -one)


@njit(cache=CACHE, nogil=True, error_model="numpy")
def input_gradient_loop(dV, pt, pl, TH, TW, dx):
    """dx = the sum over tiles of B v B^T, v = dV[t] as a 4x4 patch, added in at the
    patch's place (the input transform run backwards; neighbouring patches overlap by two
    rows or columns). The part of a patch in the padding is dropped.

    Shapes: dV: (N*TH*TW, 16, C), tile t = (n*TH + th)*TW + tw.  dx: (N, H, W, C).
    """
    N, H, W, C = dx.shape
    one = dx.dtype.type(1)
    padded = np.empty((2 * TH + 2, 2 * TW + 2, C), dtype=dx.dtype)    # the frame, as in input_tiles_loop
    w = np.empty((4, 4, C), dtype=dx.dtype)
    for n in range(N):
        padded[...] = 0
        for th in range(TH):
            for tw in range(TW):
                v = dV[(n * TH + th) * TW + tw]
                p = padded[2 * th:2 * th + 4, 2 * tw:2 * tw + 4]
                for q in range(4):      # w = B v: rows v0, v1 - v2 + v3, v1 + v2 - v0, -v3
                    _set1(w[0, q], v[q], one)
                    _set3(w[1, q], v[4 + q], v[8 + q], v[12 + q], -one, one)
                    _set3(w[2, q], v[4 + q], v[8 + q], v[q], one, -one)
                    _set1(w[3, q], v[12 + q], -one)
                for r in range(4):      # w B^T, the same of w's columns, added into the patch
                    _add1(p[r, 0], w[r, 0], one)
                    _add3(p[r, 1], w[r, 1], w[r, 2], w[r, 3], -one, one)
                    _add3(p[r, 2], w[r, 1], w[r, 2], w[r, 0], one, -one)
                    _add1(p[r, 3], w[r, 3], -one)
        dx[n] = padded[pt:pt + H, pl:pl + W]
