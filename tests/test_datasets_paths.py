"""Where the loaders look for data, and what they say when nothing is there."""
import numpy as np
import pytest

from dataset_files import isolate, write_idx_set
from minicnn.datasets import DatasetNotFoundError, cifar100, fashion_mnist, mnist


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(tmp_path, monkeypatch)


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


def test_cifar_missing_offline_names_archive_and_checksum(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        cifar100.load_data(root=tmp_path)
    assert "cifar-100-python.tar.gz" in str(info.value)
    assert "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7" in str(info.value)
    assert "cifar-100-python/ folder" in str(info.value)


def test_missing_data_message_says_everything_needed_to_fix_it(tmp_path):
    """One message: folders searched, MINICNN_DATA and its layout, MINICNN_OFFLINE, URL, checksum."""
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data(root=tmp_path / "nothing")
    message = str(info.value)
    for words in (str(tmp_path / "nothing" / "fashion-mnist"), str(tmp_path / "cache" / "minicnn"),
                  "MINICNN_DATA", "$MINICNN_DATA/fashion-mnist/train-images-idx3-ubyte.gz",
                  "MINICNN_OFFLINE=1", "unset it",
                  "https://storage.googleapis.com/tensorflow/tf-keras-datasets/t10k-labels-idx1-ubyte.gz",
                  "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"):
        assert words in message
