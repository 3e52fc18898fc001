"""Optimisers with Keras 3's update rules and defaults.

Each optimiser updates parameters **in place** (``w -= step``): a layer and its
optimiser hold the very same array, so rebinding (``w = w - step``) would leave
the layer training a stale copy.

``apply(params, grads)`` takes two equal-length lists of arrays. Per-parameter
state ("slots": momenta, accumulators) is keyed by position in that list, which
the model keeps fixed.
"""
import numpy as np

import kernels
from kernels import backend
from kernels.backend import get_array_module
from . import schedules


class Optimizer:
    """Base class. Subclasses implement ``update(i, w, g)`` for parameter number i."""

    def __init__(self, learning_rate):
        # A schedule (optimizers.schedules) sets learning_rate afresh before every step.
        self.schedule = schedules.get(learning_rate)
        self.learning_rate = float(learning_rate if self.schedule is None else self.schedule(0))
        self.iterations = 0          # steps taken so far, as Keras counts them
        self.slots = {}              # (slot name, parameter index) -> array
        self._scratch = {}           # parameter index -> work buffer (not state: never saved)

    def apply(self, params, grads):
        """One optimisation step over every parameter."""
        if self.schedule is not None:
            self.learning_rate = float(self.schedule(self.iterations))
        self.iterations += 1
        self.before_step()
        for i, (w, g) in enumerate(zip(params, grads)):
            self.update(i, w, g)

    def before_step(self):
        """Hook for per-step (not per-parameter) bookkeeping."""

    def slot(self, name, i, like, fill=0.0):
        """The optimiser's state array ``name`` for parameter ``i``, created on first use."""
        key = (name, i)
        if key not in self.slots:
            self.slots[key] = get_array_module(like).full_like(like, fill)
        return self.slots[key]

    def scratch(self, i, like):
        """A reusable work array shaped like parameter ``i``, so updates allocate nothing."""
        if i not in self._scratch:
            self._scratch[i] = get_array_module(like).empty_like(like)
        return self._scratch[i]

    def to(self, device):
        """Move the slots to "cpu" or "gpu"; work buffers are dropped and remade there on use."""
        for key in self.slots:
            self.slots[key] = backend.to_device(self.slots[key], device)
        self._scratch.clear()

    #: the numbers, besides the slot arrays, that a resumed run needs (subclasses add theirs)
    state_scalars = ("iterations",)

    def get_state(self):
        """(scalars, slots): everything that makes a resumed run continue exactly.

        scalars: {name: number} for ``state_scalars``; slots: {(slot name, parameter index): array}.
        """
        return {name: getattr(self, name) for name in self.state_scalars}, dict(self.slots)

    def set_state(self, scalars, slots):
        """Restore what ``get_state`` returned; unknown names are refused, never set."""
        unknown = sorted(set(scalars) - set(self.state_scalars))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no state named {unknown}; "
                             f"it keeps {list(self.state_scalars)}")
        for name, value in scalars.items():
            setattr(self, name, type(getattr(self, name))(value))
        self.slots = dict(slots)

    def get_config(self):
        """Constructor arguments (hyperparameters), without the state; a schedule as its config."""
        config = {k: v for k, v in vars(self).items()
                  if k not in ("slots", "_scratch", "schedule", *self.state_scalars)}
        if self.schedule is not None:
            config["learning_rate"] = schedules.serialize(self.schedule)
        return config

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """w -= lr·g; with momentum: m = μ·m - lr·g, w += m (Nesterov: w += μ·m - lr·g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def update(self, i, w, g):
        if self.momentum == 0.0:
            w -= self.learning_rate * g
            return
        m = self.slot("momentum", i, w)
        m *= self.momentum
        m -= self.learning_rate * g
        if self.nesterov:
            w += self.momentum * m - self.learning_rate * g
        else:
            w += m


def adam_step(w, g, m, v, alpha, beta_1, beta_2, epsilon):
    """One Adam update of w, m and v in place, written as the formulas read.

    alpha is the step size with both bias corrections folded in (see ``Adam``).
    Shapes: w, g, m, v: all the same.
    """
    xp = get_array_module(w)
    m += (1 - beta_1) * (g - m)                # running mean of the gradients
    v += (1 - beta_2) * (g * g - v)            # running mean of their squares
    w -= m / (xp.sqrt(v) + epsilon) * alpha


def adam_step_fused(w, g, m, v, alpha, beta_1, beta_2, epsilon, tmp):
    """``adam_step`` with every intermediate written into ``tmp`` (same shape): the same
    operations in the same order, so the same numbers, without allocating. Adam runs once
    per parameter per step, and the temporary arrays tripled its time."""
    xp = get_array_module(w)
    xp.subtract(g, m, out=tmp); tmp *= 1 - beta_1; m += tmp
    xp.multiply(g, g, out=tmp); tmp -= v; tmp *= 1 - beta_2; v += tmp
    xp.sqrt(v, out=tmp); tmp += epsilon; xp.divide(m, tmp, out=tmp); tmp *= alpha; w -= tmp


class Adam(Optimizer):
    """Adam in Keras's folded form: the bias corrections are folded into the step
    size, so epsilon is added to √v itself ("epsilon hat" in the Adam paper).
    The update is ``adam_step``; training runs a faster twin of it with the same
    numbers: the compiled ``kernels.numba_kernels.adam_step`` (one pass over memory) on
    NumPy arrays, ``adam_step_fused`` (no temporaries) on CuPy arrays."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, i, w, g):
        t = self.iterations
        # A Python float, so that NumPy rounds it to w's dtype as the compiled twin does
        alpha = float(self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        m, v = self.slot("m", i, w), self.slot("v", i, w)
        compiled = kernels.compiled_twins(w)
        if compiled is not None and w.flags.c_contiguous:
            compiled.adam_step(w, g, m, v, alpha, self.beta_1, self.beta_2, self.epsilon)
        else:
            adam_step_fused(w, g, m, v, alpha, self.beta_1, self.beta_2, self.epsilon, self.scratch(i, w))


class RMSprop(Optimizer):
    """v = ρ·v + (1-ρ)·g²; w -= lr·g/√(v + ε) — epsilon inside the root, as in Keras."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def update(self, i, w, g):
        xp = get_array_module(w)
        v = self.slot("velocity", i, w)
        v *= self.rho
        v += (1 - self.rho) * g * g
        denominator = v + self.epsilon
        if self.centered:   # subtract the squared mean gradient: a variance, not a raw second moment
            mean_g = self.slot("average_gradient", i, w)
            mean_g *= self.rho
            mean_g += (1 - self.rho) * g
            denominator -= mean_g * mean_g
        step = self.learning_rate * g / xp.sqrt(denominator)
        if self.momentum > 0:
            m = self.slot("momentum", i, w)
            m *= self.momentum
            m += step
            step = m
        w -= step


class Adagrad(Optimizer):
    """acc += g²; w -= lr·g/√(acc + ε), the accumulator starting at 0.1."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def update(self, i, w, g):
        acc = self.slot("accumulator", i, w, fill=self.initial_accumulator_value)
        acc += g * g
        w -= self.learning_rate * g / get_array_module(w).sqrt(acc + self.epsilon)


class Adadelta(Optimizer):
    """Step = -RMS(past steps)/RMS(gradients)·g, scaled by lr (Keras 3 keeps lr)."""

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7):
        super().__init__(learning_rate)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def update(self, i, w, g):
        xp = get_array_module(w)
        acc_grad = self.slot("accumulated_grad", i, w)
        acc_delta = self.slot("accumulated_delta_var", i, w)
        acc_grad *= self.rho
        acc_grad += (1 - self.rho) * g * g
        delta = -xp.sqrt(acc_delta + self.epsilon) * g / xp.sqrt(acc_grad + self.epsilon)
        acc_delta *= self.rho
        acc_delta += (1 - self.rho) * delta * delta
        w += self.learning_rate * delta


class Adamax(Optimizer):
    """Adam with an infinity norm: u = max(β2·u, |g|), w -= lr·m/((1-β1ᵗ)(u + ε))."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, i, w, g):
        xp = get_array_module(w)
        m, u = self.slot("m", i, w), self.slot("u", i, w)
        m += (1 - self.beta_1) * (g - m)
        xp.maximum(self.beta_2 * u, xp.abs(g), out=u)
        w -= self.learning_rate * m / ((1 - self.beta_1 ** self.iterations) * (u + self.epsilon))


class Nadam(Optimizer):
    """Adam with Nesterov momentum, using Keras's momentum schedule
    u_t = β1·(1 - ½·0.96ᵗ) and the running product of the u_t."""

    state_scalars = ("iterations", "_u_product")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._u_product = 1.0

    def _u(self, t):
        return self.beta_1 * (1 - 0.5 * 0.96 ** t)

    def before_step(self):
        self._u_product *= self._u(self.iterations)

    def update(self, i, w, g):
        t = self.iterations
        u_t, u_next = self._u(t), self._u(t + 1)
        m, v = self.slot("m", i, w), self.slot("v", i, w)
        m += (1 - self.beta_1) * (g - m)
        v += (1 - self.beta_2) * (g * g - v)
        m_hat = u_next * m / (1 - self._u_product * u_next) + (1 - u_t) * g / (1 - self._u_product)
        v_hat = v / (1 - self.beta_2 ** t)
        w -= self.learning_rate * m_hat / (get_array_module(v).sqrt(v_hat) + self.epsilon)


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad,
            "adadelta": Adadelta, "adamax": Adamax, "nadam": Nadam}


def get(identifier):
    """An optimiser from a name ('adam') with Keras defaults, or the object itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; choose one of {sorted(_BY_NAME)}")


def from_config(class_name, config):
    """The optimiser ``class_name`` ("Adam") built from ``get_config()``'s arguments."""
    classes = {cls.__name__: cls for cls in _BY_NAME.values()}
    if class_name not in classes:
        raise ValueError(f"unknown optimizer class {class_name!r}; minicnn has {sorted(classes)}")
    return classes[class_name](**config)
