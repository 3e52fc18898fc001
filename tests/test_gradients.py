"""Every layer, activation and loss against float64 central differences."""
import numpy as np
import pytest
from conftest import assert_grad_close

from minicnn import activations, layers as L, losses
from minicnn.gradcheck import default_cases, layer_gradients, numerical_grad

LAYER_CASES = [
    *default_cases(),
    (lambda: L.Dense(4, activation="sigmoid", kernel_regularizer="l1_l2",
                     bias_regularizer="l2"), (3, 5)),
    (lambda: L.Dense(4, use_bias=False, activation="relu"), (3, 5)),
    (lambda: L.Conv2D(4, 3, strides=1, padding="same", kernel_regularizer="l2"), (2, 5, 5, 2)),
    (lambda: L.Conv2D(2, (2, 3), strides=(2, 1), padding="valid", activation="tanh"), (3, 7, 6, 1)),
    (lambda: L.Conv2D(3, 3, strides=2, padding="same", use_bias=False), (1, 6, 6, 2)),
    (lambda: L.MaxPooling2D(2), (2, 6, 6, 3)),
    (lambda: L.MaxPooling2D(2, strides=1, padding="same"), (2, 5, 5, 2)),
    (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (2, 7, 7, 2)),
    (lambda: L.AveragePooling2D(2, strides=1, padding="valid"), (1, 5, 4, 2)),
    (lambda: L.BatchNormalization(center=False), (5, 3)),
    (lambda: L.BatchNormalization(scale=False), (4, 2, 3, 3)),
    *[(lambda name=name: L.Activation(name), (3, 6))
      for name in ("linear", "tanh", "sigmoid", "relu", "leaky_relu", "softmax")],
    (lambda: L.Activation(activations.ReLU(alpha=1.5)), (3, 6)),     # slope > 1: the other branch
    # Python functions as activation=: one recognised, two differentiated numerically.
    (lambda: L.Conv2D(3, 2, activation=lambda x: activations.relu(x, alpha=0.1)), (2, 4, 4, 2)),
    (lambda: L.Dense(4, activation=lambda x: x / (1 + np.exp(-x))), (3, 5)),      # swish
    (lambda: L.Activation(lambda x: np.log1p(np.exp(x))), (3, 6)),                  # softplus
]


def distinct_values(rng, shape):
    """Random values with no ties and nothing within 1e-3 of zero (the ReLU kink)."""
    x = rng.permutation(np.arange(1, np.prod(shape) + 1)).reshape(shape) * 0.01
    return (x - x.mean()) + 0.005 * np.sign(x - x.mean())


@pytest.mark.parametrize("make_layer, x_shape", LAYER_CASES,
                         ids=[f"{i}-{make().__class__.__name__}" for i, (make, _) in enumerate(LAYER_CASES)])
def test_layer_gradients(make_layer, x_shape, rng):
    layer = make_layer()
    layer.dtype = np.float64
    x = distinct_values(rng, x_shape)
    layer.build(x.shape[1:])
    for name, (analytic, numeric) in layer_gradients(layer, x, seed=7).items():   # random params
        assert_grad_close(analytic, numeric, what=name)


@pytest.mark.parametrize("make_layer, x_shape", LAYER_CASES[:12])
def test_backward_does_not_mutate_dy_and_overwrites_grads(make_layer, x_shape, rng):
    layer = make_layer()
    layer.dtype = np.float64
    layer.build(x_shape[1:])
    x = rng.standard_normal(x_shape)
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    dx1 = layer.backward(dy)
    first = {k: g.copy() for k, g in layer.grads.items()}
    dx2 = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy_before)
    np.testing.assert_allclose(dx1, dx2)
    for key, g in layer.grads.items():      # a second backward gives the same, not double
        np.testing.assert_allclose(g, first[key])


def test_softmax_is_row_wise_and_stable():
    z = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]])
    p = activations.softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[1], 1 / 3)
    # Each row depends on itself only: changing row 0 leaves row 1 alone.
    z2 = z.copy()
    z2[0] += 50
    np.testing.assert_allclose(activations.softmax(z2)[1], p[1])


def test_leaky_relu_function_matches_notebook_usage():
    x = np.array([-2.0, 0.5])
    np.testing.assert_allclose(activations.relu(x, alpha=0.1), [-0.2, 0.5])


LOSS_CASES = ["categorical_crossentropy", "sparse_categorical_crossentropy",
              "mean_squared_error", "binary_crossentropy"]


def loss_inputs(name, rng):
    if name == "binary_crossentropy":
        return rng.integers(0, 2, (5, 1)).astype(float), rng.uniform(0.05, 0.95, (5, 1))
    y_pred = activations.softmax(rng.standard_normal((5, 4)))
    labels = rng.integers(0, 4, 5)
    if name == "sparse_categorical_crossentropy":
        return labels, y_pred
    if name == "categorical_crossentropy":
        return np.eye(4)[labels], y_pred
    return rng.standard_normal((5, 4)), y_pred


@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_gradients(name, rng):
    loss = losses.get(name)
    y_true, y_pred = loss_inputs(name, rng)
    numeric = numerical_grad(lambda: loss.value(y_true, y_pred), y_pred)
    assert_grad_close(loss.gradient(y_true, y_pred), numeric, what=name)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_fused_softmax_crossentropy_gradient(name, rng):
    """(p - t)/N equals the gradient of loss(softmax(z)) with respect to the logits z."""
    loss = losses.get(name)
    labels = rng.integers(0, 4, 6)
    y_true = labels if name.startswith("sparse") else np.eye(4)[labels]
    z = rng.standard_normal((6, 4)) * 3
    numeric = numerical_grad(lambda: loss.value(y_true, activations.softmax(z)), z)
    assert_grad_close(loss.logits_gradient(y_true, activations.softmax(z)), numeric)


def test_crossentropy_with_extreme_logits_stays_finite():
    loss = losses.get("categorical_crossentropy")
    p = activations.softmax(np.array([[500.0, -500.0], [-500.0, 500.0]]))
    value = loss.value(np.array([[0.0, 1.0], [0.0, 1.0]]), p)
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-7) / 2, rel=1e-3)
