"""CIFAR-100 (Krizhevsky 2009), Keras-style loader.

    (x_train, y_train), (x_test, y_test) = cifar100.load_data(label_mode="fine")

Reads, under ``root`` or ``$MINICNN_DATA`` and then the cache, either the
extracted ``cifar-100-python/`` folder or ``cifar-100-python.tar.gz``;
otherwise downloads the archive (161 MiB) into the cache.
"""
from ._cifar import load_split, read_batches

SPLIT_SIZES = {"train": 50000, "test": 10000}
NUM_CLASSES = {"fine": 100, "coarse": 20}


def load_data(label_mode="fine", root=None):
    """Load CIFAR-100.

    Args:
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 super-classes).
        root: folder holding ``cifar-100-python/`` or
            ``cifar-100-python.tar.gz``; defaults to ``$MINICNN_DATA``, then the cache.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``:
        x_train uint8 (50000, 32, 32, 3) NHWC, y_train uint8 (50000, 1),
        x_test uint8 (10000, 32, 32, 3), y_test uint8 (10000, 1).
        Labels are uint8 as Keras documents (Keras itself returns int64 here).
    """
    if label_mode not in NUM_CLASSES:
        raise ValueError(f'label_mode must be "fine" or "coarse", got {label_mode!r}')
    files = read_batches("cifar-100", "cifar-100-python", "cifar-100-python.tar.gz",
                         ["train", "test"], root)
    key = f"{label_mode}_labels".encode()
    train = load_split(files, ["train"], key, SPLIT_SIZES["train"], NUM_CLASSES[label_mode])
    test = load_split(files, ["test"], key, SPLIT_SIZES["test"], NUM_CLASSES[label_mode])
    return train, test
