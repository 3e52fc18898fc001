"""Loaders for MNIST, Fashion-MNIST, CIFAR-10/100 on tiny generated files.

The fast tests write small files in the official formats into tmp_path and
never touch the network (MINICNN_OFFLINE=1) or the real cache.  The slow
tests read the real data sets from $MINICNN_DATA when it is set.
"""
import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minicnn.datasets import (DatasetFormatError, DatasetNotFoundError, cifar10, cifar100,
                              fashion_mnist, mnist)
from minicnn.datasets._cifar import safe_load
from minicnn.datasets._idx import read_idx

TINY_SIZES = {"train": 12, "test": 5}
IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ---------------------------------------------------------------- file makers
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


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No network, a private cache, no Debian copy and tiny expected sizes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MINICNN_OFFLINE", "1")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    for module in (mnist, fashion_mnist):
        monkeypatch.setattr(module, "SPLIT_SIZES", TINY_SIZES)
    for module in (cifar10, cifar100):
        monkeypatch.setattr(module, "SPLIT_SIZES", {"train": 15, "test": 3})


# ------------------------------------------------------------- MNIST-likes
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("module, subdir", [(mnist, "mnist"), (fashion_mnist, "fashion-mnist")])
def test_idx_loader_round_trip(tmp_path, module, subdir, gz):
    arrays = write_idx_set(tmp_path / "data" / subdir, gz=gz)
    (x_train, y_train), (x_test, y_test) = module.load_data(root=tmp_path / "data")
    assert x_train.shape == (12, 28, 28) and x_test.shape == (5, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8 and y_test.shape == (5,)
    np.testing.assert_array_equal(x_train, arrays["train"][0])
    np.testing.assert_array_equal(y_test, arrays["test"][1])


def test_minicnn_data_env_then_cache(tmp_path, monkeypatch):
    env_arrays = write_idx_set(tmp_path / "env" / "mnist", seed=1)
    write_idx_set(tmp_path / "cache" / "minicnn" / "mnist", seed=2)
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "env"))
    (x_train, _), _ = mnist.load_data()
    np.testing.assert_array_equal(x_train, env_arrays["train"][0])
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "empty"))
    (x_train, _), _ = mnist.load_data()                    # falls through to the cache
    assert not np.array_equal(x_train, env_arrays["train"][0])


def test_fashion_falls_back_to_debian_folder(tmp_path, monkeypatch):
    arrays = write_idx_set(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    (_, y_train), _ = fashion_mnist.load_data(root=tmp_path / "empty")
    np.testing.assert_array_equal(y_train, arrays["train"][1])


def test_missing_files_offline_say_what_to_put_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        mnist.load_data(root=tmp_path / "nothing")
    message = str(info.value)
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                 str(tmp_path / "nothing" / "mnist"), "MINICNN_OFFLINE"):
        assert name in message


def test_read_idx_accepts_good_file(tmp_path):
    path = tmp_path / "ok.idx"
    path.write_bytes(idx_bytes(np.arange(24).reshape(2, 3, 4)))
    np.testing.assert_array_equal(read_idx(path), np.arange(24).reshape(2, 3, 4))


@pytest.mark.parametrize("corrupt, words", [
    (lambda raw: gzip.compress(raw)[:-20], "gzip"),               # truncated gzip
    (lambda raw: b"\x08\x03" + raw[2:], "magic"),                 # wrong magic
    (lambda raw: raw[:-7], "truncated"),                          # IDX data cut short
    (lambda raw: raw + b"\0" * 3, "truncated or corrupt"),        # trailing junk
    (lambda raw: raw[:6], "header"),                              # header cut short
])
def test_read_idx_names_file_on_corruption(tmp_path, corrupt, words):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(idx_bytes(np.zeros((2, 28, 28), np.uint8))))
    with pytest.raises(DatasetFormatError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_wrong_counts_are_reported(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mnist")
    monkeypatch.setattr(mnist, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte.gz.*60000"):
        mnist.load_data(root=tmp_path)


def test_images_and_labels_must_agree(tmp_path):
    write_idx_set(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DatasetFormatError, match="t10k-labels"):
        mnist.load_data(root=tmp_path)


# ------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_folder_and_archive(tmp_path, archive):
    x_train, y_train, x_test, y_test = write_cifar10(tmp_path, archive=archive)
    (xa, ya), (xb, yb) = cifar10.load_data(root=tmp_path)
    assert xa.shape == (15, 32, 32, 3) and xb.shape == (3, 32, 32, 3)
    assert ya.shape == (15, 1) and yb.shape == (3, 1)
    assert xa.dtype == ya.dtype == np.uint8 and xa.flags.c_contiguous
    np.testing.assert_array_equal(xa, x_train)           # NHWC round trip of channel-planar rows
    np.testing.assert_array_equal(yb[:, 0], y_test)


def test_cifar10_pixel_layout_is_channel_planar(tmp_path):
    write_cifar10(tmp_path)
    (x, _), _ = cifar10.load_data(root=tmp_path)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(),
                       encoding="bytes")[b"data"]
    # Row layout: 1024 red values, then 1024 green, then 1024 blue, each row-major.
    assert x[0, 1, 2, 1] == raw[0, 1024 + 1 * 32 + 2]
    assert x[1, 31, 0, 2] == raw[1, 2048 + 31 * 32]


@pytest.mark.parametrize("archive", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, archive, monkeypatch):
    monkeypatch.setattr(cifar100, "SPLIT_SIZES", {"train": 6, "test": 4})
    made = write_cifar100(tmp_path, archive=archive)
    (x, y_fine), (_, y_test) = cifar100.load_data(root=tmp_path)
    assert x.shape == (6, 32, 32, 3) and y_fine.shape == (6, 1) and y_test.shape == (4, 1)
    np.testing.assert_array_equal(x, made["train"][0])
    np.testing.assert_array_equal(y_fine[:, 0], made["train"][1])
    (_, y_coarse), _ = cifar100.load_data(label_mode="coarse", root=tmp_path)
    np.testing.assert_array_equal(y_coarse[:, 0], made["train"][2])
    with pytest.raises(ValueError, match="label_mode"):
        cifar100.load_data(label_mode="medium", root=tmp_path)


def test_cifar_batch_with_wrong_row_count_names_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    x = np.zeros((3, 32, 32, 3), np.uint8)
    path.write_bytes(cifar_batch_bytes(x, [1, 2]))        # 3 rows, 2 labels
    with pytest.raises(DatasetFormatError, match="3 image rows but 2") as info:
        cifar10.load_data(root=tmp_path)
    assert str(path) in str(info.value)


def test_cifar_total_count_is_checked(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setattr(cifar10, "SPLIT_SIZES", {"train": 50000, "test": 10000})
    with pytest.raises(DatasetFormatError, match="expected 50000 images"):
        cifar10.load_data(root=tmp_path)


def test_cifar_pickle_written_by_numpy1_loads(tmp_path):
    """The official files name numpy.core.multiarray (NumPy 1); that must still load."""
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _, (x_test, _) = cifar10.load_data(root=tmp_path)
    assert x_test.shape == (3, 32, 32, 3)


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("make_payload", [lambda marker: _Evil(f"touch {marker}"), _EvalEvil])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, make_payload):
    write_cifar10(tmp_path)
    marker = tmp_path / "MARKER"
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": make_payload(marker), b"labels": []}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load") as info:
        cifar10.load_data(root=tmp_path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_truncated_cifar_pickle_is_a_format_error(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetFormatError, match="data_batch_1"):
        cifar10.load_data(root=tmp_path)


def test_cifar_missing_offline_names_archive_and_checksum(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        cifar100.load_data(root=tmp_path)
    assert "cifar-100-python.tar.gz" in str(info.value)
    assert "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7" in str(info.value)
    assert "cifar-100-python/ folder" in str(info.value)


def test_codecs_encode_only_for_latin1_bytes():
    """Protocol-2 pickles from Python 3 spell bytes as _codecs.encode(text, "latin1")."""
    good = pickle.dumps({b"k": b"\xff\x00"}, protocol=2)
    assert b"_codecs" in good and safe_load(good, "good") == {b"k": b"\xff\x00"}
    bad = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(pickle.UnpicklingError, match="zlib"):
        safe_load(bad, "bad")


# ---------------------------------------------------- real data (slow tests)
@pytest.fixture
def real_sizes(monkeypatch):
    """Undo the tiny sizes of the autouse fixture for the real data sets."""
    for module in (mnist, fashion_mnist):
        monkeypatch.setattr(module, "SPLIT_SIZES", {"train": 60000, "test": 10000})
    monkeypatch.setattr(cifar10, "SPLIT_SIZES", {"train": 50000, "test": 10000})


@pytest.mark.slow
def test_real_mnist(data_dir, real_sizes):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(root=data_dir)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    np.testing.assert_array_equal(y_test[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(y_train), [5923, 6742, 5958, 6131, 5842,
                                                         5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(y_test), [980, 1135, 1032, 1010, 982,
                                                        892, 958, 1028, 974, 1009])


@pytest.mark.slow
def test_real_fashion_mnist(data_dir, real_sizes):
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(root=data_dir)
    assert x_train.shape == (60000, 28, 28) and y_test.shape == (10000,)
    assert (np.bincount(y_train) == 6000).all() and (np.bincount(y_test) == 1000).all()


@pytest.mark.slow
def test_real_cifar10(data_dir, real_sizes):
    if not (data_dir / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no {data_dir / 'cifar-10-batches-py'}: unpack CIFAR-10's python version "
                    "there (the layout is in tests/README.md)")
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(root=data_dir)
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert y_train.shape == (50000, 1) and y_train.dtype == np.uint8
    assert (np.bincount(y_train[:, 0]) == 5000).all() and (np.bincount(y_test[:, 0]) == 1000).all()
    assert 100 < x_train.mean() < 140                   # real photos, not noise or zeros
