"""Training on real data (slow): run with `python -m pytest -m slow` and MINICNN_DATA set."""

import numpy as np
import pytest
from conftest import predict_in_fresh_process

from minicnn import Sequential, load_model
from minicnn.datasets import fashion_mnist, mnist
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D)

pytestmark = pytest.mark.slow


def test_mnist_mlp_reaches_90_percent_in_one_epoch(data_dir):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(root=data_dir)
    model = Sequential([Flatten(input_shape=(28, 28)), Dense(128, activation="sigmoid"),
                        Dense(10, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train / 255.0, y_train, batch_size=64, epochs=1, verbose=0)
    _, accuracy = model.evaluate(x_test / 255.0, y_test, verbose=0)
    assert accuracy >= 0.90


def small_bn_convnet():
    model = Sequential([
        Conv2D(16, 3, activation="relu", input_shape=(28, 28, 1)), BatchNormalization(momentum=0.9),
        MaxPooling2D(), Dropout(0.25), Flatten(), Dense(32, activation="relu"),
        BatchNormalization(momentum=0.9), Dropout(0.3), Dense(10, activation="softmax")], seed=3)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def test_bn_dropout_convnet_trains_saves_reloads_and_resumes(data_dir, tmp_path):
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(root=data_dir)
    x_train = (x_train[:3000] / 255.0).astype(np.float32)[..., None]
    x_test = (x_test[:500] / 255.0).astype(np.float32)[..., None]
    y_train, y_test = y_train[:3000], y_test[:500]

    straight = small_bn_convnet()
    losses = straight.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    # momentum=0.9: with Keras's 0.99 the moving variance needs ~500 steps to forget its
    # starting value of 1, so a short run evaluates badly in inference mode (as in Keras).
    assert straight.evaluate(x_test, y_test, verbose=0)[1] > 0.7

    first = small_bn_convnet()
    first.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    path = tmp_path / "fashion.npz"
    first.save(path)
    np.testing.assert_array_equal(predict_in_fresh_process(path, x_test, tmp_path),
                                  first.predict(x_test))

    resumed = load_model(path)
    later = resumed.fit(x_train, y_train, batch_size=32, epochs=3, initial_epoch=2, verbose=0)
    np.testing.assert_allclose(later.history["loss"], losses[2:], rtol=1e-4)
