"""Fashion-MNIST (Zalando Research), Keras-style loader.

    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()

Same four file names as MNIST, in a ``fashion-mnist/`` folder under ``root``
or ``$MINICNN_DATA``, then the cache, then Debian's
``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``),
then a download into the cache.
"""
from pathlib import Path

from ._idx import load_idx_dataset

SPLIT_SIZES = {"train": 60000, "test": 10000}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_data(root=None):
    """Load Fashion-MNIST.

    Args:
        root: folder holding a ``fashion-mnist/`` sub-folder; defaults to
            ``$MINICNN_DATA``, then the cache, then Debian's copy.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``:
        x_train uint8 (60000, 28, 28), y_train uint8 (60000,) in 0-9
        (names in ``CLASS_NAMES``), x_test uint8 (10000, 28, 28),
        y_test uint8 (10000,).
    """
    return load_idx_dataset("fashion-mnist", root, SPLIT_SIZES, extra_dirs=[DEBIAN_DIR])
