"""to_categorical, train_test_split, normalize_images and standardize."""
import numpy as np
import pytest

from minicnn.utils import normalize_images, standardize, to_categorical, train_test_split


def test_to_categorical_matches_keras():
    out = to_categorical([0, 2, 1])
    assert out.dtype == np.float64 and out.shape == (3, 3)
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_to_categorical_squeezes_cifar_labels():
    y = np.array([[3], [0]], dtype=np.uint8)
    out = to_categorical(y, num_classes=10)
    assert out.shape == (2, 10) and out[0, 3] == 1 and out.sum() == 2


def test_to_categorical_accepts_whole_floats_and_keeps_extra_axes():
    assert to_categorical(np.array([1.0, 0.0])).tolist() == [[0, 1], [1, 0]]
    assert to_categorical(np.zeros((2, 3), int), num_classes=4).shape == (2, 3, 4)


@pytest.mark.parametrize("y, num_classes, words", [
    ([0, -1], None, "negative"),
    ([0, 10], 10, "num_classes=10"),
    ([0.5], None, "whole"),
    (["a"], None, "integers"),
    ([], None, "num_classes"),
])
def test_to_categorical_errors(y, num_classes, words):
    with pytest.raises((ValueError, TypeError), match=words):
        to_categorical(np.array(y), num_classes)


def test_train_test_split_fraction_and_pairing():
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    (x_tr, y_tr), (x_te, y_te) = train_test_split(x, y, test_size=0.25, seed=0)
    assert len(x_te) == 3 and len(x_tr) == 7              # ceil(2.5)
    np.testing.assert_array_equal(x_tr[:, 0] // 2, y_tr)  # rows still match their labels
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))


def test_train_test_split_seeded_int_and_unshuffled():
    x, y = np.arange(10), np.arange(10)
    a = train_test_split(x, y, test_size=4, seed=3)
    b = train_test_split(x, y, test_size=4, seed=3)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    (_, _), (x_te, _) = train_test_split(x, y, test_size=4, shuffle=False)
    np.testing.assert_array_equal(x_te, [6, 7, 8, 9])     # like Keras's validation_split


@pytest.mark.parametrize("test_size", [0.0, 1.0, 0, 10, 11])
def test_train_test_split_rejects_empty_parts(test_size):
    with pytest.raises(ValueError):
        train_test_split(np.arange(10), np.arange(10), test_size=test_size)


def test_train_test_split_length_mismatch():
    with pytest.raises(ValueError, match="9"):
        train_test_split(np.arange(10), np.arange(9))


def test_normalize_images():
    out = normalize_images(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 1], [0.2, 0.4]], rtol=1e-6)
    with pytest.raises(TypeError, match="already normalised"):
        normalize_images(out)
    with pytest.raises(ValueError):
        normalize_images(np.array([300]))


def test_standardize_per_channel_uses_train_statistics(rng):
    x_train = rng.normal([1.0, 10.0, -5.0], [2.0, 0.5, 3.0], size=(50, 4, 4, 3))
    x_test = x_train[:5] + 1.0
    a, b = standardize(x_train, x_test)
    assert a.dtype == b.dtype == np.float32 and a.shape == x_train.shape
    np.testing.assert_allclose(a.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=(0, 1, 2)), 1, atol=1e-4)
    std = x_train.std(axis=(0, 1, 2))
    np.testing.assert_allclose(b - a[:5], np.broadcast_to(1 / std, b.shape), rtol=1e-4)


def test_standardize_constant_and_grayscale():
    a, b = standardize(np.full((4, 3, 3), 7, np.uint8))
    assert b is None and np.all(a == 0)                   # no division by zero
