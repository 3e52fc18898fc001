"""The CuPy path on a real GPU: kernels, layers, optimisers and whole models give the
CPU's numbers. Every test here carries the ``gpu`` marker, so it is skipped where CuPy
or a CUDA device is missing (tests/conftest.py); ``pytest -m gpu`` runs only these.
"""
import numpy as np
import pytest
from test_backend import small_convnet, toy_data
from test_gradients import LAYER_CASES, LOSS_CASES, distinct_values, loss_inputs
from test_kernels import POOL_CASES, POOLS, _conv_cases

import kernels
from kernels import backend, naive, numpy_kernels
from minicnn import Sequential, load_model, losses, optimizers, zoo
from minicnn.layers import Conv2D, Dense, Flatten

pytestmark = pytest.mark.gpu

FLOAT64 = dict(rtol=1e-9, atol=1e-11)       # same math, another summation order (cuBLAS)
FLOAT32 = dict(rtol=2e-3, atol=2e-5)        # a few float32 steps apart


def gpu(a):
    return backend.to_device(a, "gpu")


def cpu(a):
    return backend.to_numpy(a)


@pytest.mark.parametrize("x_shape, k_shape, strides, padding", list(_conv_cases())[::3])
def test_conv_kernels_on_gpu_match_naive(x_shape, k_shape, strides, padding, rng):
    x, kernel = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    bias = rng.standard_normal(k_shape[3])
    y_ref, cache_ref = naive.conv2d_forward(x, kernel, bias, strides, padding)
    y, cache = kernels.conv2d_forward(gpu(x), gpu(kernel), gpu(bias), strides, padding)
    assert backend.is_gpu(y)
    np.testing.assert_allclose(cpu(y), y_ref, **FLOAT64)
    dy = rng.standard_normal(y_ref.shape)
    for name, got, want in zip(("dx", "dkernel", "dbias"), kernels.conv2d_backward(gpu(dy), cache),
                               naive.conv2d_backward(dy, cache_ref)):
        np.testing.assert_allclose(cpu(got), want, err_msg=name, **FLOAT64)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size, strides", POOL_CASES)
def test_pool_kernels_on_gpu_match_naive(pool, padding, size, strides, rng):
    x = rng.standard_normal((2, 7, 6, 3))
    y_ref, cache_ref = getattr(naive, pool + "_forward")(x, size, strides, padding)
    y, cache = getattr(kernels, pool + "_forward")(gpu(x), size, strides, padding)
    np.testing.assert_allclose(cpu(y), y_ref, **FLOAT64)
    dy = rng.standard_normal(y_ref.shape)
    np.testing.assert_allclose(cpu(getattr(kernels, pool + "_backward")(gpu(dy), cache)),
                               getattr(naive, pool + "_backward")(dy, cache_ref), **FLOAT64)


def test_gpu_arrays_always_take_the_numpy_kernels(monkeypatch):
    monkeypatch.setenv("MINICNN_KERNELS", "numba")
    assert kernels._impl(gpu(np.zeros(3))) is numpy_kernels


@pytest.mark.parametrize("make_layer, x_shape", LAYER_CASES,
                         ids=[f"{i}-{make().__class__.__name__}" for i, (make, _) in enumerate(LAYER_CASES)])
def test_every_layer_on_gpu_matches_cpu(make_layer, x_shape, rng):
    """Forward (training and inference), dx and every parameter gradient, in float64."""
    on_cpu, on_gpu = make_layer(), make_layer()
    for layer in (on_cpu, on_gpu):
        layer.dtype = np.float64
        layer.build(x_shape[1:])
    on_gpu.set_weights(on_cpu.get_weights())
    on_gpu.to("gpu")
    x = distinct_values(rng, x_shape)
    for layer in (on_cpu, on_gpu):          # Dropout: the same mask on both
        layer.rng = np.random.default_rng(3)
    y = on_cpu.forward(x, training=True)
    y_gpu = on_gpu.forward(gpu(x), training=True)
    assert backend.is_gpu(y_gpu)
    np.testing.assert_allclose(cpu(y_gpu), y, **FLOAT64)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(cpu(on_gpu.backward(gpu(dy))), on_cpu.backward(dy), **FLOAT64)
    for name, grad in on_cpu.grads.items():
        np.testing.assert_allclose(cpu(on_gpu.grads[name]), grad, err_msg=name, **FLOAT64)
    np.testing.assert_allclose(cpu(on_gpu.forward(gpu(x))), on_cpu.forward(x), **FLOAT64)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_every_loss_on_gpu_matches_cpu(name, rng):
    loss = losses.get(name)
    y_true, y_pred = loss_inputs(name, rng)
    assert loss.value(gpu(y_true), gpu(y_pred)) == pytest.approx(loss.value(y_true, y_pred), rel=1e-12)
    np.testing.assert_allclose(cpu(loss.gradient(gpu(y_true), gpu(y_pred))),
                               loss.gradient(y_true, y_pred), **FLOAT64)


@pytest.mark.parametrize("optimizer", sorted(optimizers._BY_NAME))
def test_every_optimizer_trains_the_same_on_gpu(optimizer):
    x, y = toy_data()
    on_cpu = small_convnet(optimizer)
    cpu_losses = on_cpu.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    on_gpu = small_convnet(optimizer).to("gpu")
    gpu_losses = on_gpu.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-3)
    for got, want in zip(on_gpu.get_weights(), on_cpu.get_weights()):
        np.testing.assert_allclose(got, want, **FLOAT32)


@pytest.mark.parametrize("build, input_shape", [
    (zoo.lenet5, (28, 28, 1)), (lambda seed: zoo.keras_convnet(bn=True, dropout=0.25, seed=seed), (28, 28, 1)),
    (zoo.fashion_model2, (28, 28, 1)), (zoo.alexnet_like, (32, 32, 3))],
    ids=["lenet5", "keras_convnet_bn", "fashion_model2", "alexnet_like"])
def test_notebook_models_train_the_same_on_gpu(build, input_shape):
    """Two steps of each notebook network: the losses and the predictions after them."""
    rng = np.random.default_rng(1)
    x = rng.random((32, *input_shape), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    losses, predictions = [], []
    for device in ("cpu", "gpu"):
        model = build(seed=0).to(device)
        model.compile("adam", "sparse_categorical_crossentropy")
        losses.append(model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"])
        predictions.append(model.predict(x))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
    np.testing.assert_allclose(predictions[1], predictions[0], **FLOAT32)


def test_gpu_training_matches_cpu_and_comes_back():
    """Same seed, same data: the GPU run follows the CPU run to float32 rounding; results
    come back as NumPy arrays, and the model moved back predicts the same."""
    x, y = toy_data()
    on_cpu = small_convnet()
    cpu_history = on_cpu.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    on_gpu = small_convnet().to("gpu")
    gpu_history = on_gpu.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    np.testing.assert_allclose(gpu_history["loss"], cpu_history["loss"], rtol=1e-3)
    predictions = on_gpu.predict(x)
    assert isinstance(predictions, np.ndarray)
    np.testing.assert_allclose(predictions, on_cpu.predict(x), **FLOAT32)
    assert all(isinstance(w, np.ndarray) for w in on_gpu.get_weights())
    on_gpu.to("cpu")
    assert on_gpu.device == "cpu" and not backend.is_gpu(on_gpu.layers[0].params["kernel"])
    np.testing.assert_allclose(on_gpu.predict(x), predictions, rtol=1e-5, atol=1e-6)


def test_models_and_layers_moved_before_they_are_built_build_on_the_gpu():
    x, y = toy_data()
    model = Sequential([Conv2D(4, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")],
                       seed=0).to("gpu")                           # no input shape: built by fit
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert all(backend.is_gpu(w) for layer in model.layers for w in (*layer.params.values(),
                                                                      *layer.grads.values()))
    layer = Dense(3).to("gpu")
    out = layer(gpu(x.reshape(len(x), -1)))                        # built by its first call
    assert backend.is_gpu(out) and backend.is_gpu(layer.params["kernel"])


def test_a_run_resumed_on_the_gpu_continues_as_on_the_cpu(tmp_path):
    """BackupAndRestore into a GPU model: the saved optimiser slots go to the GPU too, and the
    resumed run follows the same run resumed on the CPU."""
    from minicnn.callbacks import BackupAndRestore
    x, y = toy_data()
    first = small_convnet().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[
        BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)]).history["loss"]
    histories = []
    for device in ("cpu", "gpu"):
        backup = tmp_path / f"backup_{device}"
        backup.mkdir()
        for file in (tmp_path / "backup").iterdir():
            (backup / file.name).write_bytes(file.read_bytes())
        model = small_convnet().to(device)
        histories.append(model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                                   callbacks=[BackupAndRestore(backup)]).history["loss"])
    assert all(backend.is_gpu(slot) for slot in model.optimizer.slots.values())
    assert len(histories[0]) == 3 and histories[0][0] == first[0]     # epoch 1 came from the backup
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-3)


def test_a_model_trained_on_gpu_saves_and_loads_on_cpu(tmp_path):
    x, y = toy_data()
    model = small_convnet().to("gpu")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.device == "cpu"
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), **FLOAT32)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)      # resumes with the saved slots


def test_evaluate_predict_and_trace_take_gpu_arrays():
    x, y = toy_data()
    model = small_convnet().to("gpu")
    loss, accuracy = model.evaluate(gpu(x), gpu(y), verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    np.testing.assert_allclose(model.predict(gpu(x)), model.predict(x), **FLOAT32)
    rows = model.trace(x[:16], y[:16]).rows
    assert len(rows) == len(model.layers) and all(row["forward_ms"] > 0 for row in rows)
