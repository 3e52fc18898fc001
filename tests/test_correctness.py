"""Defects that gave silently wrong numbers (issue 14, items 0-8), each pinned by a test."""
import numpy as np
import pytest

import kernels
from kernels import backend
from minicnn import Sequential, losses, optimizers
from minicnn.layers import BatchNormalization, Dense, Dropout
from minicnn.layers.normalization import batch_moments, batchnorm_backward, batchnorm_forward


def test_batchnorm_float32_statistics_and_gradients_match_float64(rng):
    """Batch 64 of 26x26x32 (a first conv layer's output): float32 sums over 43 264 values
    per channel must not drift from the float64 result by more than float32 rounding."""
    x64 = 3.0 + 0.5 * rng.standard_normal((64, 26, 26, 32))   # an offset mean, as after ReLU
    dy64 = rng.standard_normal(x64.shape)
    gamma64, beta64 = rng.uniform(0.5, 1.5, 32), rng.standard_normal(32)
    results = {}
    for dtype in (np.float64, np.float32):
        x, dy = x64.astype(dtype), dy64.astype(dtype)
        gamma, beta = gamma64.astype(dtype), beta64.astype(dtype)
        mean, var = batch_moments(x)
        y, cache = batchnorm_forward(x, mean, var, gamma, beta, 1e-3)
        results[dtype] = (mean, var, y, *batchnorm_backward(dy, cache))
    names = ["mean", "var", "y", "dx", "dgamma", "dbeta"]
    for name, want, got in zip(names, results[np.float64], results[np.float32]):
        assert got.dtype == np.float32, name
        scale = np.abs(want).max()
        # float64 accumulation gets ~2e-7 here; the float32 sums of old reached 1e-5.
        assert np.abs(got - want).max() <= 1e-6 * scale, name


def test_model_backward_is_the_true_derivative_after_compile(rng):
    """model.backward(loss.gradient(...)) must include the softmax derivative."""
    model = Sequential([Dense(4, activation="softmax", input_shape=(3,))], dtype="float64", seed=0)
    model.compile("sgd", "categorical_crossentropy")
    x = rng.standard_normal((5, 3))
    y = np.eye(4)[rng.integers(0, 4, 5)]
    y_pred = model.forward(x, training=True)
    model.backward(model.loss.gradient(y, y_pred))
    via_chain_rule = model.layers[0].grads["kernel"].copy()
    model.backward_from_loss(y, y_pred)                        # the fused training path
    np.testing.assert_allclose(via_chain_rule, model.layers[0].grads["kernel"], rtol=1e-10)
    np.testing.assert_allclose(via_chain_rule, x.T @ ((y_pred - y) / 5), rtol=1e-10)


def test_input_gradient_after_fit_is_not_none(rng):
    """Saliency maps: after fit, backward through the first layer still returns dx."""
    model = Sequential([Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.standard_normal((8, 4)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 8), epochs=1, verbose=0)
    layer = model.layers[0]
    layer.forward(x, training=True)
    assert layer.backward(np.ones((8, 3), np.float32)).shape == x.shape


def test_dropout_backward_after_inference_forward_is_identity():
    layer = Dropout(0.5, seed=0)
    layer.build((10,))
    x = np.ones((4, 10), np.float32)
    layer.forward(x, training=True)
    layer.forward(x, training=False)
    np.testing.assert_array_equal(layer.backward(x), x)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_one_dimensional_targets_do_not_broadcast(loss, rng):
    """Targets (N,) against outputs (N, 1) are aligned (as Keras does), not broadcast to (N, N)."""
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(3,))], seed=0)
    model.compile("sgd", loss)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = (rng.random(16) > 0.5).astype(np.float32)
    expected = model.loss.value(y[:, None], model.predict(x))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-6)
    model.fit(x, y, epochs=1, verbose=0)          # crashed in a matrix product before


def test_targets_of_the_wrong_shape_are_refused():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"targets shaped like the model's output, \(N, 2\)"):
        model.fit(np.zeros((4, 3)), np.zeros(4), verbose=0)


def test_generator_batches_get_the_label_checks():
    model = Sequential([Dense(10, activation="softmax", input_shape=(3,))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    batches = [(np.zeros((2, 3), np.float32), np.array([1, -1]))]
    with pytest.raises(ValueError, match="labels run from -1 to 1"):
        model.fit(iter(batches), steps_per_epoch=1, epochs=1, verbose=0)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "32", True])
def test_batch_size_must_be_a_positive_integer(batch_size):
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    for call in (lambda: model.fit(x, y, batch_size=batch_size, verbose=0),
                 lambda: model.evaluate(x, y, batch_size=batch_size, verbose=0),
                 lambda: model.predict(x, batch_size=batch_size)):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            call()


def test_numpy_integer_batch_size_is_accepted():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), batch_size=np.int64(2), verbose=0)


def test_to_moves_every_optimizer_buffer(monkeypatch, rng):
    """No array of the optimiser may stay behind on the old device (Adam's work buffer included)."""
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    model.compile("adam", "mse")
    model.train_on_batch(rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    moved = []

    def fake_to_device(x, device):      # a "device" that is a fresh copy we can recognise
        copy = np.array(x)
        moved.append(copy)
        return copy

    monkeypatch.setattr(backend, "to_device", fake_to_device)
    model.to("cpu")
    optimizer = model.optimizer
    held = [*optimizer.slots.values(), *optimizer._scratch.values()]
    assert held and all(any(a is m for m in moved) for a in held)


def test_adam_update_moves_weights_after_to(rng):
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    model.compile(optimizers.Adam(), "mse")
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    model.train_on_batch(x, y)
    model.to("cpu")
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert not np.allclose(before[0], model.get_weights()[0])


def test_sparse_labels_that_are_nan_or_text_are_refused():
    loss = losses.get("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="whole-number class labels but got nan"):
        loss.check_labels(np.array([1.0, np.nan]), (10,))
    with pytest.raises(ValueError, match="dtype <U3"):
        loss.check_labels(np.array(["cat", "dog"]), (10,))
    loss.check_labels(np.array([1.0, 2.0]), (10,))   # whole-number floats are fine


def test_batchnorm_inference_uses_hand_computed_moving_statistics(rng):
    layer = BatchNormalization(momentum=0.9)
    layer.dtype = np.float64
    layer.build((3,))
    batches = [rng.standard_normal((8, 3)) * (i + 1) + i for i in range(4)]
    mean, var = np.zeros(3), np.ones(3)
    for batch in batches:
        layer.forward(batch, training=True)
        mean = 0.9 * mean + 0.1 * batch.mean(axis=0)
        var = 0.9 * var + 0.1 * batch.var(axis=0)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(layer.forward(x), (x - mean) / np.sqrt(var + 1e-3), rtol=1e-12)


def test_dropout_drops_the_requested_fraction_and_rescales():
    rate, n = 0.3, 200_000
    layer = Dropout(rate, seed=5)
    layer.build((n,))
    y = layer.forward(np.ones((1, n), np.float32), training=True)
    dropped = float((y == 0).mean())
    # The dropped count is Binomial(n, rate): allow five standard deviations.
    assert abs(dropped - rate) <= 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-6)


def test_in_place_activations_never_touch_another_layers_arrays(rng):
    """Dense and Conv2D may apply their activation in place on their own x·W + b; an
    Activation layer must not, since its input is the previous layer's cached output."""
    from minicnn.layers import Activation
    model = Sequential([Dense(4, input_shape=(3,)), Activation("relu"), Dense(2, activation="tanh")],
                       dtype="float64")
    x = rng.standard_normal((5, 3))
    hidden = model.layers[0].forward(x, training=True)
    kept = hidden.copy()
    model.layers[1].forward(hidden, training=True)
    np.testing.assert_array_equal(hidden, kept)          # relu did not overwrite its input
    z = x @ model.layers[0].params["kernel"] + model.layers[0].params["bias"]
    np.testing.assert_array_equal(kept, z)                # linear Dense output is x·W + b
    y = model.layers[2].forward(np.maximum(kept, 0), training=True)
    np.testing.assert_allclose(y, np.tanh(np.maximum(z, 0) @ model.layers[2].params["kernel"]
                                          + model.layers[2].params["bias"]))


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("shape", [(64, 26, 26, 32), (7, 5), (3, 4, 5, 6)])
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_compiled_batchnorm_equals_the_numpy_definition(shape, dtype, tolerance, rng, monkeypatch):
    """The Numba twins (one or two passes) give what the readable NumPy functions give."""
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))

    def run():
        mean, var = batch_moments(x)
        y, cache = batchnorm_forward(x, mean, var, gamma, beta, 1e-3)
        return (mean, var, y, *batchnorm_backward(dy, cache))
    assert kernels.compiled_twins(x) is kernels.numba_kernels
    compiled = run()
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    assert kernels.compiled_twins(x) is None
    for name, got, want in zip(("mean", "var", "y", "dx", "dgamma", "dbeta"), compiled, run()):
        assert got.dtype == want.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_shape", ["(N,)", "(N, 1) floats"])
def test_sparse_crossentropy_shortcuts_equal_the_one_hot_definition(dtype, label_shape, rng):
    # value and logits_gradient index the true class instead of building one-hot rows
    p = rng.dirichlet(np.ones(7), size=33).astype(dtype)
    p[0] = np.eye(7, dtype=dtype)[2]            # a certain answer: clipped, not log(0)
    labels = rng.integers(0, 7, 33)
    labels[0] = 5                               # ... and wrong
    sparse_labels = labels if label_shape == "(N,)" else labels[:, None].astype(np.float64)
    one_hot = np.eye(7, dtype=dtype)[labels]
    sparse, dense = losses.SparseCategoricalCrossentropy(), losses.CategoricalCrossentropy()
    assert sparse.value(sparse_labels, p) == pytest.approx(dense.value(one_hot, p), rel=1e-6)
    gradient = sparse.logits_gradient(sparse_labels, p)
    assert gradient.dtype == dtype
    np.testing.assert_array_equal(gradient, dense.logits_gradient(one_hot, p))   # the same numbers
