"""Dense and Conv2D add their bias and apply their activation through a compiled twin on
NumPy arrays (kernels.numba_kernels.bias_activation / activation_backward). The layer must
give what the readable path gives (MINICNN_KERNELS=numpy): output, input gradient, kernel
and bias gradients."""
import numpy as np
import pytest

import kernels
from minicnn.activations import relu
from minicnn.layers import Conv2D, Dense

pytestmark = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")

ACTIVATIONS = {"linear": "linear", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
               "leaky 0.1": lambda x: relu(x, alpha=0.1), "leaky 2.0": lambda x: relu(x, alpha=2.0)}
COMPILED = {"linear", "relu", "tanh", "sigmoid", "leaky 0.1", "leaky 2.0"}


def make(kind, activation, use_bias, dtype, rng):
    if kind == "dense":
        layer, x_shape = Dense(6, activation=ACTIVATIONS[activation], use_bias=use_bias), (9, 11)
    else:
        layer = Conv2D(5, 3, padding="same", activation=ACTIVATIONS[activation], use_bias=use_bias)
        x_shape = (4, 7, 6, 3)
    layer.build(x_shape[1:])
    for name, value in layer.params.items():        # a non-zero bias, so that adding it shows
        value[...] = rng.standard_normal(value.shape)
    layer.params = {name: value.astype(dtype) for name, value in layer.params.items()}
    layer.grads = {name: np.zeros_like(value) for name, value in layer.params.items()}
    layer.needs_input_grad = True
    return layer, rng.standard_normal(x_shape).astype(dtype)


def forward_backward(layer, x, dy_seed):
    y = layer.forward(x, training=True).copy()
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(dy)
    return {"y": y, "dx": dx, **{f"d{name}": grad.copy() for name, grad in layer.grads.items()}}


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_compiled_bias_and_activation_match_the_readable_path(kind, activation, use_bias, dtype, tolerance,
                                                              monkeypatch):
    calls = []
    compiled_forward = kernels.numba_kernels.bias_activation
    monkeypatch.setattr(kernels.numba_kernels, "bias_activation",
                        lambda *args: calls.append(args[2]) or compiled_forward(*args))
    results = {}
    for impl in ("numba", "numpy"):
        monkeypatch.setenv("MINICNN_KERNELS", impl)
        layer, x = make(kind, activation, use_bias, dtype, np.random.default_rng(0))
        results[impl] = forward_backward(layer, x, dy_seed=1)
    assert bool(calls) == (activation in COMPILED)     # the twin really ran where it should
    for name, want in results["numpy"].items():
        got = results["numba"][name]
        assert got.dtype == want.dtype == dtype, name
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.abs(want).max(), err_msg=name)


def test_bias_twin_refuses_a_view_it_could_not_write_through():
    z = np.zeros((4, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.numba_kernels.bias_activation(z, np.ones(3, np.float32), "relu")


@pytest.mark.parametrize("name", ["linear", "relu", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_forward_gives_the_forward_numbers(name, dtype):
    """An activation applied in place to a layer's own pre-activation (the path taken
    without the compiled twin: softmax always, every activation on CuPy arrays) must
    give exactly what the readable forward gives."""
    from minicnn import activations
    z = np.random.default_rng(5).standard_normal((7, 10)).astype(dtype) * 4
    activation = activations.get(name)
    want = activation.forward(z)
    got = activation.forward_in_place(z.copy())
    np.testing.assert_array_equal(got, want)
