"""Tiny data files in the official formats, written by the data-set tests.

The fast tests write them into tmp_path and never touch the network
(MINICNN_OFFLINE=1) or the real cache; ``isolate`` sets that up.
"""
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from minicnn.datasets import cifar10, cifar100, fashion_mnist, mnist

TINY_SIZES = {"train": 12, "test": 5}
IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def isolate(tmp_path, monkeypatch):
    """No network, a private cache, no Debian copy and tiny expected sizes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MINICNN_OFFLINE", "1")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    for module in (mnist, fashion_mnist):
        monkeypatch.setattr(module, "SPLIT_SIZES", TINY_SIZES)
    for module in (cifar10, cifar100):
        monkeypatch.setattr(module, "SPLIT_SIZES", {"train": 15, "test": 3})


def real_sizes(monkeypatch):
    """Undo the tiny sizes of ``isolate`` for the real data sets."""
    for module in (mnist, fashion_mnist):
        monkeypatch.setattr(module, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    monkeypatch.setattr(cifar10, "SPLIT_SIZES", {"train": 50000, "test": 10000})


def idx_bytes(array):
    """Encode a uint8 array in the IDX format (magic 0x0000 0x08 ndim, big-endian sizes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def write_idx_set(folder, sizes=TINY_SIZES, gz=True, seed=0):
    """Write the four IDX files of a tiny MNIST-like set; return {split: (x, y)}."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, (image_name, label_name) in IDX_NAMES.items():
        x = rng.integers(0, 256, (sizes[split], 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, sizes[split], dtype=np.uint8)
        for name, array in ((image_name, x), (label_name, y)):
            raw = idx_bytes(array)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        arrays[split] = (x, y)
    return arrays


def cifar_batch_bytes(images, labels, label_keys=(b"labels",), protocol=2):
    """Pickle NHWC images (N, 32, 32, 3) the way the official batches store them."""
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))
    batch = {b"batch_label": b"test batch", b"data": data,
             b"filenames": [b"%05d.png" % i for i in range(len(images))]}
    for key in label_keys:
        batch[key] = [int(v) for v in labels]
    return pickle.dumps(batch, protocol=protocol)


def write_cifar10(root, per_batch=3, seed=0, archive=False):
    """Tiny CIFAR-10: folder cifar-10-batches-py/ (or its .tar.gz); returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    files, xs, ys = {}, [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        files[name] = cifar_batch_bytes(x, y)
        xs.append(x)
        ys.append(y)
    files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in cifar10.CLASS_NAMES]})
    _write_cifar_files(Path(root), "cifar-10-batches-py", "cifar-10-python.tar.gz", files, archive)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_cifar100(root, n_train=6, n_test=4, seed=0, archive=False):
    """Tiny CIFAR-100 with fine and coarse labels; returns {split: (x, fine, coarse)}."""
    rng = np.random.default_rng(seed)
    files, out = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        batch = pickle.loads(cifar_batch_bytes(x, fine, (b"fine_labels",)))
        batch[b"coarse_labels"] = [int(v) // 5 for v in fine]
        files[split] = pickle.dumps(batch, protocol=2)
        out[split] = (x, fine, fine // 5)
    files["meta"] = pickle.dumps({b"fine_label_names": [], b"coarse_label_names": []})
    _write_cifar_files(Path(root), "cifar-100-python", "cifar-100-python.tar.gz", files, archive)
    return out


def _write_cifar_files(root, folder_name, archive_name, files, archive):
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        (root / folder_name).mkdir(exist_ok=True)
        for name, raw in files.items():
            (root / folder_name / name).write_bytes(raw)
        return
    with tarfile.open(root / archive_name, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
