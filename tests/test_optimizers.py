"""Each optimiser's first three steps against Keras's formulas written out by hand."""
import math

import numpy as np
import pytest

import kernels
from minicnn import optimizers
from minicnn.layers import Dense

needs_numba = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")

W0 = [0.5, -0.3, 0.0]
GRADS = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.1, 0.2]]


def run_by_hand(step, **slots):
    """Apply ``step(w, g, t, slots) -> w`` to each weight in W0 for the three GRADS;
    returns one trace of weights per parameter. Each parameter gets its own slots."""
    out = []
    for w, grads in zip(W0, zip(*GRADS)):
        state, trace = dict(slots), []
        for t, g in enumerate(grads, start=1):
            w = step(w, g, t, state)
            trace.append(w)
        out.append(trace)
    return out


def hand_sgd(lr=0.01, mu=0.0, nesterov=False):
    def step(w, g, t, s):
        s["m"] = mu * s["m"] - lr * g
        return w + (mu * s["m"] - lr * g if nesterov else s["m"])
    return run_by_hand(step, m=0.0)


def hand_adam(lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    def step(w, g, t, s):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - lr_t * s["m"] / (math.sqrt(s["v"]) + eps)
    return run_by_hand(step, m=0.0, v=0.0)


def hand_rmsprop(lr=0.001, rho=0.9, eps=1e-7, momentum=0.0, centered=False):
    def step(w, g, t, s):
        s["v"] = rho * s["v"] + (1 - rho) * g * g
        s["mean_g"] = rho * s["mean_g"] + (1 - rho) * g
        denominator = s["v"] - s["mean_g"] ** 2 * centered + eps
        s["m"] = momentum * s["m"] + lr * g / math.sqrt(denominator)
        return w - s["m"]
    return run_by_hand(step, v=0.0, mean_g=0.0, m=0.0)


def hand_adagrad(lr=0.001, init=0.1, eps=1e-7):
    def step(w, g, t, s):
        s["acc"] += g * g
        return w - lr * g / math.sqrt(s["acc"] + eps)
    return run_by_hand(step, acc=init)


def hand_adadelta(lr=0.001, rho=0.95, eps=1e-7):
    def step(w, g, t, s):
        s["eg"] = rho * s["eg"] + (1 - rho) * g * g
        delta = -math.sqrt(s["ed"] + eps) / math.sqrt(s["eg"] + eps) * g
        s["ed"] = rho * s["ed"] + (1 - rho) * delta * delta
        return w + lr * delta
    return run_by_hand(step, eg=0.0, ed=0.0)


def hand_adamax(lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    def step(w, g, t, s):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = max(b2 * s["u"], abs(g))
        return w - lr / (1 - b1 ** t) * s["m"] / (s["u"] + eps)
    return run_by_hand(step, m=0.0, u=0.0)


def hand_nadam(lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    def step(w, g, t, s):
        mu_t = b1 * (1 - 0.5 * 0.96 ** t)
        mu_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        s["prod"] *= mu_t
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat = mu_next * s["m"] / (1 - s["prod"] * mu_next) + (1 - mu_t) * g / (1 - s["prod"])
        return w - lr * m_hat / (math.sqrt(s["v"] / (1 - b2 ** t)) + eps)
    return run_by_hand(step, m=0.0, v=0.0, prod=1.0)


CASES = [
    ("sgd", optimizers.SGD(), hand_sgd()),
    ("sgd_momentum", optimizers.SGD(0.1, momentum=0.9), hand_sgd(0.1, 0.9)),
    ("sgd_nesterov", optimizers.SGD(0.1, momentum=0.9, nesterov=True), hand_sgd(0.1, 0.9, True)),
    ("adam", optimizers.Adam(), hand_adam()),
    ("rmsprop", optimizers.RMSprop(), hand_rmsprop()),
    ("rmsprop_centered", optimizers.RMSprop(0.01, centered=True), hand_rmsprop(0.01, centered=True)),
    ("rmsprop_momentum", optimizers.RMSprop(0.01, momentum=0.8), hand_rmsprop(0.01, momentum=0.8)),
    ("rmsprop_both", optimizers.RMSprop(0.01, momentum=0.8, centered=True),
     hand_rmsprop(0.01, momentum=0.8, centered=True)),
    ("adagrad", optimizers.Adagrad(), hand_adagrad()),
    ("adadelta", optimizers.Adadelta(), hand_adadelta()),
    ("adamax", optimizers.Adamax(), hand_adamax()),
    ("nadam", optimizers.Nadam(), hand_nadam()),
]


@pytest.mark.parametrize("name, optimizer, expected", CASES, ids=[c[0] for c in CASES])
def test_first_three_steps_match_keras_formulas(name, optimizer, expected):
    w = np.array(W0)
    for step, g in enumerate(GRADS):
        optimizer.apply([w], [np.array(g)])
        np.testing.assert_allclose(w, [trace[step] for trace in expected], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam"])
def test_string_names_give_keras_defaults_and_update_in_place(name):
    optimizer = optimizers.get(name)
    expected_lr = 0.01 if name == "sgd" else 0.001
    assert optimizer.learning_rate == expected_lr
    layer = Dense(2)
    layer.build((3,))
    kernel = layer.params["kernel"]
    before = kernel.copy()
    optimizer.apply([kernel], [np.ones_like(kernel)])
    assert layer.params["kernel"] is kernel          # same array object: updated in place
    assert (kernel != before).all()                  # every weight moved (Adadelta only by ~1e-6)


def test_unknown_optimizer_name_lists_choices():
    with pytest.raises(ValueError, match="adam"):
        optimizers.get("adamw_typo")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_step_equals_the_readable_one(dtype):
    from minicnn.optimizers import adam_step, adam_step_fused
    rng = np.random.default_rng(0)
    w, g, m = (rng.standard_normal((7, 5)).astype(dtype) for _ in range(3))
    v = rng.random((7, 5)).astype(dtype)
    readable = [a.copy() for a in (w, g, m, v)]
    fused = [a.copy() for a in (w, g, m, v)]
    for step in range(3):
        adam_step(*readable, 0.01, 0.9, 0.999, 1e-7)
        adam_step_fused(*fused, 0.01, 0.9, 0.999, 1e-7, np.empty_like(w))
    for got, want in zip(fused, readable):
        np.testing.assert_array_equal(got, want)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 3, 4, 6), (1001,), (2, 1)])
def test_compiled_adam_step_equals_the_readable_one(dtype, shape):
    """Bit for bit: the Numba pass does the readable version's operations in its order."""
    from minicnn.optimizers import adam_step
    rng = np.random.default_rng(1)
    w, m = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    v = rng.random(shape).astype(dtype)
    readable, compiled = [a.copy() for a in (w, m, v)], [a.copy() for a in (w, m, v)]
    for step in range(3):
        g = rng.standard_normal(shape[::-1]).astype(dtype).T      # a non-contiguous gradient
        alpha = 0.01 * math.sqrt(1 - 0.999 ** (step + 1)) / (1 - 0.9 ** (step + 1))
        adam_step(readable[0], g, *readable[1:], alpha, 0.9, 0.999, 1e-7)
        kernels.numba_kernels.adam_step(compiled[0], g, *compiled[1:], alpha, 0.9, 0.999, 1e-7)
    for got, want in zip(compiled, readable):
        np.testing.assert_array_equal(got, want)


def test_adam_trains_a_non_contiguous_parameter_like_a_contiguous_one():
    """A Fortran-ordered weight cannot take the compiled pass; Adam must still update it
    in place, to the same numbers as a C-ordered copy gets."""
    rng = np.random.default_rng(2)
    w_c = rng.standard_normal((6, 4)).astype(np.float32)
    w_f = np.asfortranarray(w_c)
    grads = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)]
    for optimizer, w in ((optimizers.Adam(0.01), w_c), (optimizers.Adam(0.01), w_f)):
        for g in grads:
            optimizer.apply([w], [g])
    assert w_f.flags.f_contiguous
    np.testing.assert_array_equal(w_f, w_c)


@needs_numba
def test_compiled_adam_step_refuses_arrays_it_cannot_update_in_place():
    w = np.zeros((4, 3), np.float32, order="F")
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.numba_kernels.adam_step(w, w, w.copy(), w.copy(), 0.1, 0.9, 0.999, 1e-7)
