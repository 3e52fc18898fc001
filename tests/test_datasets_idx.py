"""MNIST and Fashion-MNIST: the IDX reader and its checks, on tiny generated files and the real sets."""
import gzip

import numpy as np
import pytest

import dataset_files
from dataset_files import idx_bytes, isolate, write_idx_set
from minicnn.datasets import DatasetFormatError, fashion_mnist, mnist
from minicnn.datasets._idx import read_idx


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(tmp_path, monkeypatch)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("module, subdir", [(mnist, "mnist"), (fashion_mnist, "fashion-mnist")])
def test_idx_loader_round_trip(tmp_path, module, subdir, gz):
    arrays = write_idx_set(tmp_path / "data" / subdir, gz=gz)
    (x_train, y_train), (x_test, y_test) = module.load_data(root=tmp_path / "data")
    assert x_train.shape == (12, 28, 28) and x_test.shape == (5, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8 and y_test.shape == (5,)
    np.testing.assert_array_equal(x_train, arrays["train"][0])
    np.testing.assert_array_equal(y_test, arrays["test"][1])


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


@pytest.fixture
def real_sizes(monkeypatch):
    dataset_files.real_sizes(monkeypatch)


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


def test_header_with_overflowing_sizes_is_a_format_error(tmp_path):
    """Three sizes of 2^32 - 1 overflow a 64-bit product; the reader must say so, not reshape."""
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes() + b"\0" * 64)
    with pytest.raises(DatasetFormatError, match="more than any data set") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_bomb_is_stopped_at_the_declared_size(tmp_path):
    """64 MB of zeros behind a header declaring 2x28x28: reading stops after 1568 bytes."""
    import tracemalloc
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
        zeros = bytes(1 << 20)
        for _ in range(64):
            f.write(zeros)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_header_shape_is_checked_before_the_data_is_read(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DatasetFormatError, match=r"declares shape \(7,\), expected \(5,\)"):
        read_idx(path, (5,))
