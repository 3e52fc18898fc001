"""Finite-difference gradient checks that learners can run on any layer.

    >>> from minicnn.gradcheck import check_layer
    >>> from minicnn.layers import Dense
    >>> report = check_layer(Dense(3), (4, 5))
    >>> report.ok
    True

Everything runs in float64: float32 rounding swamps a finite difference.
"""
import numpy as np


def numerical_grad(f, x, h=1e-5):
    """Central-difference gradient of the scalar function ``f()`` with respect to ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it each call.

    Shapes:
        x: any shape, float64.  Returns an array of the same shape.
    """
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = f()
        flat_x[i] = old - h
        f_minus = f()
        flat_x[i] = old
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad
