"""CIFAR-10/100: the safe unpickler, the batch checks and the layouts on disk."""
import os
import pickle

import numpy as np
import pytest

import dataset_files
from dataset_files import cifar_batch_bytes, isolate, write_cifar10, write_cifar100
from minicnn.datasets import DatasetFormatError, cifar10, cifar100
from minicnn.datasets._cifar import safe_load


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(tmp_path, monkeypatch)


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


def test_codecs_encode_only_for_latin1_bytes():
    """Protocol-2 pickles from Python 3 spell bytes as _codecs.encode(text, "latin1")."""
    good = pickle.dumps({b"k": b"\xff\x00"}, protocol=2)
    assert b"_codecs" in good and safe_load(good, "good") == {b"k": b"\xff\x00"}
    bad = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(pickle.UnpicklingError, match="zlib"):
        safe_load(bad, "bad")


@pytest.fixture
def real_sizes(monkeypatch):
    dataset_files.real_sizes(monkeypatch)


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


@pytest.mark.parametrize("bad_label", [3.7, float("nan")])
def test_cifar_labels_that_are_not_whole_numbers_are_refused(tmp_path, bad_label):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[b"labels"][1] = bad_label
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetFormatError, match="whole-number class labels") as info:
        cifar10.load_data(root=tmp_path)
    assert str(path) in str(info.value)


def test_oversized_archive_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from minicnn.datasets import _cifar
    write_cifar10(tmp_path, archive=True)
    monkeypatch.setattr(_cifar, "MAX_BATCH_BYTES", 1000)        # each tiny batch is ~9 kB
    with pytest.raises(DatasetFormatError, match="claims .* bytes; a CIFAR batch holds about 31 MB"):
        cifar10.load_data(root=tmp_path)
