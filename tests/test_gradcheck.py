"""The gradient checker itself: it must catch a wrong backward, and whole compiled models
must pass a finite-difference check through the very path users train with."""
import numpy as np
import pytest
from conftest import assert_grad_close

from minicnn import Sequential, gradcheck, optimizers, saving
from minicnn.gradcheck import check_layer, numerical_grad
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D,
                            normalization)


def test_check_layer_catches_a_batchnorm_backward_that_forgets_gamma(monkeypatch):
    assert check_layer(BatchNormalization(), (6, 4)).ok
    true_backward = normalization.batchnorm_backward

    def forgets_gamma(dy, cache):
        x_hat, inv_std, gamma = cache
        return true_backward(dy, (x_hat, inv_std, np.ones_like(gamma)))

    monkeypatch.setattr(normalization, "batchnorm_backward", forgets_gamma)
    report = check_layer(BatchNormalization(), (6, 4))
    assert not report.ok and report.errors["x"][0] > 1e-3


def training_gradients(model, x, y, reset_dropout):
    """The gradients train_on_batch applies: plain SGD with learning rate 1 moves w by -g."""
    before = [p.copy() for layer in model.layers for p in layer.params.values()]
    reset_dropout()
    model.train_on_batch(x, y)
    params = [p for layer in model.layers for p in layer.params.values()]
    grads = [b - p for b, p in zip(before, params)]
    for param, value in zip(params, before):
        param[...] = value
    return params, grads


def check_model(model, x, y, dropout_seed=None):
    """Finite differences of the training loss against what one SGD step applied."""
    model.compile(optimizers.SGD(learning_rate=1.0), model.loss)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        gradcheck.randomize_parameters(layer, rng)
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]

    def reset_dropout():      # the same mask in every forward below
        for layer in dropouts:
            layer.rng = np.random.default_rng(dropout_seed)

    def loss():
        reset_dropout()
        y_pred = model.forward(x, training=True)
        return model.loss.value(y, y_pred) + model.regularization_penalty()

    params, grads = training_gradients(model, x, y, reset_dropout)
    assert len(params) >= 4
    for index, (param, grad) in enumerate(zip(params, grads)):
        assert_grad_close(grad, numerical_grad(loss, param), what=f"parameter {index}")


def test_convnet_gradients_through_train_on_batch(rng):
    """conv + BN + pooling + dropout + dense + softmax/cross-entropy (the fused path)."""
    model = Sequential([Conv2D(3, 3, activation="tanh", input_shape=(6, 6, 2)),
                        BatchNormalization(), MaxPooling2D(2), Dropout(0.3, seed=5), Flatten(),
                        Dense(4, activation="softmax")], dtype="float64", seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    check_model(model, rng.standard_normal((5, 6, 6, 2)), rng.integers(0, 4, 5), dropout_seed=5)


@pytest.mark.parametrize("target_shape", [(6, 2), (6, 1), (6,)])
def test_regression_gradients_through_train_on_batch(rng, target_shape):
    units = target_shape[1] if len(target_shape) == 2 else 1
    model = Sequential([Dense(5, activation="tanh", kernel_regularizer="l2", input_shape=(3,)),
                        Dense(units)], dtype="float64", seed=0)
    model.compile("sgd", "mse")
    check_model(model, rng.standard_normal((6, 3)), rng.standard_normal(target_shape))


def test_command_line_checks_every_layer_type(capsys):
    assert gradcheck.main([]) == 0
    out = capsys.readouterr().out
    assert f"{len(gradcheck.default_cases())}/{len(gradcheck.default_cases())} layers pass" in out


def test_command_line_checks_a_saved_model_and_fails_loudly(tmp_path, capsys, monkeypatch):
    model = Sequential([Dense(3, activation="tanh", input_shape=(4,)), BatchNormalization(),
                        Dense(2, activation="softmax")])
    path = tmp_path / "model.npz"
    saving.save_model(model, path)
    assert gradcheck.main([str(path)]) == 0
    assert "3/3 layers pass" in capsys.readouterr().out
    true_backward = normalization.batchnorm_backward
    monkeypatch.setattr(normalization, "batchnorm_backward",     # dx without the batch terms
                        lambda dy, cache: (dy * cache[1] * cache[2], *true_backward(dy, cache)[1:]))
    assert gradcheck.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "2/3 layers pass" in out
