"""Output sizes and padding amounts, the one place every kernel and layer gets them.

TensorFlow/Keras rules, per spatial axis of length ``n``, window ``k``, stride ``s``:

* ``"valid"``: only windows that fit entirely, ``out = (n - k) // s + 1``, no padding.
* ``"same"``: ``out = ceil(n / s)``; the total padding is
  ``max((out - 1) * s + k - n, 0)``, the smaller half before (top/left) and the odd
  extra after (bottom/right).
"""
import numpy as np

PADDINGS = ("valid", "same")


def check_padding(padding):
    """Return ``padding`` lower-cased, or raise ValueError naming the allowed values."""
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return mode


def output_size(n, k, s, padding):
    """Length of the output along one axis (see the module docstring for the rule)."""
    mode = check_padding(padding)
    if k < 1 or s < 1:
        raise ValueError(f"window and stride must be >= 1, got window={k}, stride={s}")
    if mode == "same":
        return -(-n // s)  # ceil(n / s) without floats
    if k > n:
        raise ValueError(f"window {k} is larger than the input ({n}) with padding='valid'; "
                         "use padding='same' or a smaller window")
    return (n - k) // s + 1


def pad_amounts(n, k, s, padding):
    """``(before, after)`` zero rows (or columns) added along one axis."""
    out = output_size(n, k, s, padding)
    if check_padding(padding) == "valid":
        return 0, 0
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def real_cells(n, k, s, padding):
    """How many non-padded input cells each output position's window covers, per axis.

    Average pooling divides by ``real_cells(H,…)[oh] * real_cells(W,…)[ow]``, as Keras
    does with ``same`` padding.

    Shapes:
        returns: (out,) int64 NumPy array.
    """
    out = output_size(n, k, s, padding)
    before, _ = pad_amounts(n, k, s, padding)
    start = np.arange(out) * s - before
    return np.minimum(start + k, n) - np.maximum(start, 0)


def inside_cells(x_shape, kh, kw, strides, padding):
    """Window cells inside the image (not padding), summed over every output pixel of one
    image: the multiply-adds a convolution needs per (input channel, filter). Without
    padding it is OH·OW·kh·kw.

    Shapes:
        x_shape: (N, H, W, C).  Returns an int.
    """
    _, H, W, _ = x_shape
    sh, sw = strides
    return int(real_cells(H, kh, sh, padding).sum() * real_cells(W, kw, sw, padding).sum())


def conv_geometry(x_shape, kh, kw, strides, padding):
    """Everything a window loop needs: ``(OH, OW, pad_top, pad_bottom, pad_left, pad_right)``.

    Shapes:
        x_shape: (N, H, W, C).
    """
    _, H, W, _ = x_shape
    sh, sw = strides
    OH, OW = output_size(H, kh, sh, padding), output_size(W, kw, sw, padding)
    pt, pb = pad_amounts(H, kh, sh, padding)
    pl, pr = pad_amounts(W, kw, sw, padding)
    return OH, OW, pt, pb, pl, pr
