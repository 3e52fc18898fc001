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


def relative_error(analytic, numeric, floor=1e-8):
    """Elementwise |a - n| / max(|a| + |n|, floor): the floor keeps near-zero entries sane."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)


def randomize_parameters(layer, rng):
    """Overwrite every parameter with values uniform in ±[0.5, 1.5].

    Initial values hide mistakes: with BatchNormalization's gamma = 1 and beta = 0 a
    backward that forgets gamma still passes, and zero biases hide a missing bias term.
    Random magnitudes and signs, kept away from 0, leave no such blind spot.
    """
    for param in layer.params.values():
        param[...] = rng.uniform(0.5, 1.5, param.shape) * rng.choice([-1.0, 1.0], param.shape)


def layer_gradients(layer, x, seed=0, randomize=True):
    """Analytic and numerical gradients of ``sum(layer.forward(x) * dy) + penalty`` for a random dy.

    Returns {"x": (analytic, numeric), "kernel": (…), …}: the input and every parameter.
    With ``randomize`` the parameters are first replaced by random values (see
    ``randomize_parameters``). The layer's generator is re-seeded before each forward,
    so Dropout keeps one mask.

    Shapes:
        x: (N, …) float64 input.  Each pair has the shape of x or of the parameter.
    """
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if not layer.built:
        layer.dtype = np.float64
        layer.build(x.shape[1:])
    if randomize:
        randomize_parameters(layer, rng)

    def forward():
        layer.rng = np.random.default_rng(seed)
        return layer.forward(x, training=True)

    dy = rng.standard_normal(forward().shape)   # random upstream gradient, never ones
    forward()
    dx = layer.backward(dy.copy())
    analytic = {"x": dx, **{name: g.copy() for name, g in layer.grads.items()}}

    def loss():   # the weight penalty is part of the loss, so its gradient is checked too
        return float(np.sum(forward() * dy)) + layer.regularization_penalty()

    pairs = {"x": (analytic["x"], numerical_grad(loss, x))}
    for name, param in layer.params.items():
        pairs[name] = (analytic[name], numerical_grad(loss, param))
    return pairs


class Report:
    """Worst relative error per array; ``ok`` when all are below ``tolerance``."""

    def __init__(self, layer, errors, tolerance):
        self.layer, self.errors, self.tolerance = layer, errors, tolerance
        self.ok = all(err <= tolerance for err, _ in errors.values())

    def __str__(self):
        rows = [f"{self.layer!r}"]
        for name, (err, index) in self.errors.items():
            mark = "ok" if err <= self.tolerance else "FAIL"
            rows.append(f"  {name:<16} max rel. error {err:.2e} at {index}  {mark}")
        return "\n".join(rows)


def check_layer(layer, x_shape, seed=0, tolerance=1e-6):
    """Gradient-check ``layer`` on a random float64 input of ``x_shape`` (batch axis included)."""
    x = np.random.default_rng(seed + 1).standard_normal(x_shape)
    errors = {}
    for name, (analytic, numeric) in layer_gradients(layer, x, seed).items():
        err = relative_error(analytic, numeric)
        index = np.unravel_index(np.argmax(err), err.shape) if err.size else ()
        errors[name] = (float(err.max()) if err.size else 0.0, tuple(int(i) for i in index))
    return Report(layer, errors, tolerance)


def default_cases():
    """One small case per layer type: what ``python -m minicnn.gradcheck`` checks."""
    from . import layers as L
    from .activations import ReLU
    return [
        (lambda: L.Dense(4, activation="tanh"), (3, 5)),
        (lambda: L.Dense(3, activation="softmax"), (4, 5)),
        (lambda: L.Dense(3, activation=ReLU(0.1), kernel_regularizer="l2"), (4, 5)),
        (lambda: L.Conv2D(3, (3, 2), strides=2, padding="same", activation="relu"), (2, 7, 6, 2)),
        (lambda: L.Conv2D(2, 3, padding="valid", activation="sigmoid"), (2, 6, 6, 3)),
        (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (2, 7, 7, 2)),
        (lambda: L.AveragePooling2D(2, padding="valid"), (2, 6, 6, 2)),
        (lambda: L.GlobalAveragePooling2D(), (2, 4, 3, 2)),
        (lambda: L.ZeroPadding2D(((1, 2), (0, 1))), (2, 3, 3, 2)),
        (lambda: L.BatchNormalization(), (6, 4)),
        (lambda: L.BatchNormalization(), (4, 3, 3, 2)),
        (lambda: L.Dropout(0.4), (4, 6)),
        (lambda: L.Flatten(), (2, 3, 3, 2)),
        (lambda: L.Activation("softmax"), (3, 5)),
        (lambda: L.LeakyReLU(0.3), (3, 5)),
    ]


def main(argv=None):
    """Check every layer type (or the layers of a saved model) and print a table."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m minicnn.gradcheck", description=main.__doc__)
    parser.add_argument("model", nargs="?", help="a file written by model.save(); checks its layers")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.model:
        from .layers import LAYER_CLASSES
        from .models import load_model
        model = load_model(args.model)
        cases, shape = [], model.input_shape
        for layer in model.layers:
            spec = (type(layer).__name__, layer.get_config())
            cases.append((lambda spec=spec: LAYER_CLASSES[spec[0]](**spec[1]), (2, *shape)))
            shape = layer.output_shape
    else:
        cases = default_cases()
    reports = [check_layer(make(), x_shape, tolerance=args.tolerance) for make, x_shape in cases]
    for report in reports:
        print(report)
    failed = sum(not r.ok for r in reports)
    print(f"\n{len(reports) - failed}/{len(reports)} layers pass (tolerance {args.tolerance:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
