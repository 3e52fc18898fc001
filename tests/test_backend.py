"""The optional GPU path: one switch, clear errors without CuPy, same results with it."""
import subprocess
import sys

import numpy as np
import pytest

from kernels import backend
from minicnn import Sequential
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D)


def small_convnet(optimizer="adam", seed=0):
    """A little of everything the GPU path must carry: conv, BatchNorm, pooling, Dropout."""
    model = Sequential([
        Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        BatchNormalization(), MaxPooling2D(), Flatten(), Dropout(0.2),
        Dense(3, activation="softmax")], seed=seed)
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    return model


def toy_data(n=48):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a GPU")
def test_asking_for_the_gpu_without_one_says_what_to_install():
    model = small_convnet()
    with pytest.raises((ImportError, RuntimeError), match="minicnn\\[gpu\\]|CUDA device"):
        model.to("gpu")
    assert model.device == "cpu"        # a failed move leaves the model usable on the CPU
    model.fit(*toy_data(), epochs=1, verbose=0)


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a GPU")
def test_a_model_not_yet_built_is_refused_the_gpu_at_once():
    """No weights to move yet: the missing GPU is still reported by ``to``, not at the first batch."""
    model = Sequential([Conv2D(4, 3), Flatten(), Dense(3)])
    with pytest.raises((ImportError, RuntimeError), match="minicnn\\[gpu\\]|CUDA device"):
        model.to("gpu")
    assert model.device == "cpu" and all(layer.device == "cpu" for layer in model.layers)
    with pytest.raises(ValueError, match="'cpu' or 'gpu'"):
        Dense(3).to("cuda")


def test_importing_minicnn_does_not_import_cupy():
    code = "import sys, minicnn, kernels; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cpu_to_cpu_is_a_no_op():
    model = small_convnet()
    before = model.get_weights()
    model.to("cpu")
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
