"""Small data helpers in the Keras spirit: one-hot labels, splits, scaling."""
import math

import numpy as np

from .summary import plot_model  # noqa: F401 - keras.utils.plot_model, drawn as text


def to_categorical(y, num_classes=None):
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    A trailing axis of size 1 is dropped first, so CIFAR labels (N, 1) work.

    Args:
        y: integer labels, shape (N,) or (N, 1) (any shape in general).
        num_classes: total number of classes; default ``max(y) + 1``.

    Returns:
        float64 array of shape ``y.shape + (num_classes,)`` (Keras's dtype for
        NumPy input).
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.dtype.kind == "f":
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError("to_categorical: labels must be whole numbers")
    elif y.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: negative label {y.min()}")
    if num_classes is None:
        if y.size == 0:
            raise ValueError("to_categorical: pass num_classes for an empty label array")
        num_classes = int(y.max()) + 1
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {y.max()} does not fit num_classes={num_classes}")
    return np.eye(num_classes, dtype=np.float64)[y]


def train_test_split(x, y, test_size=0.1, shuffle=True, seed=None):
    """Split arrays into a training part and a held-out part.

    Unlike Keras's ``validation_split`` (which always takes the *last*
    samples), this shuffles first by default, so class-sorted data gives a
    fair held-out set.

    Args:
        x: samples, shape (N, ...).
        y: labels, shape (N, ...).
        test_size: a fraction in (0, 1) (rounded up) or a number of samples.
        shuffle: draw the split at random (seeded by ``seed``); otherwise the
            last ``test_size`` samples are held out.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``, the same layout as ``load_data``.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_test_split: x has {n} samples but y has {len(y)}")
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"train_test_split: a fractional test_size must be in (0, 1), got {test_size}")
        n_test = math.ceil(test_size * n)
    else:
        n_test = int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: cannot hold out {n_test} of {n} samples")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    train, test = order[: n - n_test], order[n - n_test:]
    return (x[train], y[train]), (x[test], y[test])


def normalize_images(x):
    """Scale 8-bit pixel values to float32 in [0, 1].

    Shapes: any, e.g. (N, H, W) or (N, H, W, C); the output has the same shape.
    Float input is refused rather than divided again: it is most likely
    already normalised.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"normalize_images expects integer pixels 0-255, got dtype {x.dtype} "
                        "(already normalised?)")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError("normalize_images expects pixel values in 0-255")
    return x.astype(np.float32) / np.float32(255.0)


def standardize(x_train, x_test=None, epsilon=1e-7):
    """Subtract the training mean and divide by the training std.

    Statistics come from ``x_train`` only (using the test set would leak it).
    For NHWC input (N, H, W, C) they are per channel; for any other shape
    one mean and std cover all values.

    Returns:
        ``(x_train_std, x_test_std)`` as float32 (``x_test_std`` is None when
        ``x_test`` is None).
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    axes = (0, 1, 2) if x_train.ndim == 4 else None
    mean = x_train.mean(axis=axes)
    std = x_train.std(axis=axes) + epsilon   # epsilon: a constant channel must not divide by 0

    def apply(x):
        return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)

    return apply(x_train), (None if x_test is None else apply(x_test))
