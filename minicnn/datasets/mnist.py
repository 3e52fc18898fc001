"""MNIST handwritten digits (LeCun & Cortes), Keras-style loader.

    (x_train, y_train), (x_test, y_test) = mnist.load_data()

Looks for ``mnist/train-images-idx3-ubyte.gz`` etc. (gzipped or not) under
``root`` or ``$MINICNN_DATA``, then under the cache
(``~/.cache/minicnn/mnist/``), and downloads into the cache as a last resort.
"""
from ._idx import load_idx_dataset

# Exact sizes of the official splits; every load checks them.
SPLIT_SIZES = {"train": 60000, "test": 10000}


def load_data(root=None):
    """Load MNIST.

    Args:
        root: folder holding an ``mnist/`` sub-folder; defaults to
            ``$MINICNN_DATA``, then the cache.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``:
        x_train uint8 (60000, 28, 28), y_train uint8 (60000,) in 0-9,
        x_test uint8 (10000, 28, 28), y_test uint8 (10000,).
    """
    return load_idx_dataset("mnist", root, SPLIT_SIZES)
