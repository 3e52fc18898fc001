"""CIFAR-10 (Krizhevsky 2009), Keras-style loader.

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()

Reads, under ``root`` or ``$MINICNN_DATA`` and then the cache, either the
extracted ``cifar-10-batches-py/`` folder or ``cifar-10-python.tar.gz``;
otherwise downloads the archive (163 MiB) into the cache.
"""
from ._cifar import load_split, read_batches

SPLIT_SIZES = {"train": 50000, "test": 10000}
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def load_data(root=None):
    """Load CIFAR-10.

    Args:
        root: folder holding ``cifar-10-batches-py/`` or
            ``cifar-10-python.tar.gz``; defaults to ``$MINICNN_DATA``, then the cache.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``:
        x_train uint8 (50000, 32, 32, 3) NHWC, y_train uint8 (50000, 1) in 0-9,
        x_test uint8 (10000, 32, 32, 3), y_test uint8 (10000, 1).
    """
    files = read_batches("cifar-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                         TRAIN_FILES + TEST_FILES, root)
    train = load_split(files, TRAIN_FILES, b"labels", SPLIT_SIZES["train"], 10)
    test = load_split(files, TEST_FILES, b"labels", SPLIT_SIZES["test"], 10)
    return train, test
