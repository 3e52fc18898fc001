"""Learning-rate schedules: ``optimizers.schedules.ExponentialDecay`` and friends.

A schedule is a function of the step number (the optimiser's ``iterations`` before the
step, 0 for the first) returning the learning rate for that step, as in Keras 3:

    lr = optimizers.schedules.ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.9)
    model.compile(optimizer=optimizers.Adam(learning_rate=lr), loss=...)
"""
import math


class LearningRateSchedule:
    """Base class: ``schedule(step) -> learning rate`` and a config for saving."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return dict(vars(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate · decay_rate^(step / decay_steps); with ``staircase`` the
    exponent is rounded down, so the rate drops once every ``decay_steps`` steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps, self.decay_rate = decay_steps, float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent


class InverseTimeDecay(ExponentialDecay):
    """initial_learning_rate / (1 + decay_rate · step / decay_steps) (staircase: rounded down)."""

    def __call__(self, step):
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate / (1 + self.decay_rate * exponent)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] up to and including step boundaries[0], values[1] up to boundaries[1], …"""

    def __init__(self, boundaries, values):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay needs one more value than boundaries; got "
                             f"{len(boundaries)} boundaries and {len(values)} values")
        self.boundaries, self.values = list(boundaries), [float(v) for v in values]

    def __call__(self, step):
        index = sum(step > boundary for boundary in self.boundaries)
        return self.values[index]


class CosineDecay(LearningRateSchedule):
    """Half a cosine from initial_learning_rate down to alpha · initial over decay_steps."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), decay_steps
        self.alpha = float(alpha)

    def __call__(self, step):
        progress = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


_CLASSES = {cls.__name__: cls for cls in
            (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay)}


def get(learning_rate):
    """The schedule behind an optimiser's ``learning_rate=``, or None for a plain number.

    Accepts a schedule object or its saved form ``{"class_name": ..., "config": {...}}``.
    """
    if isinstance(learning_rate, LearningRateSchedule):
        return learning_rate
    if isinstance(learning_rate, dict):
        return _CLASSES[learning_rate["class_name"]](**learning_rate["config"])
    return None


def serialize(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}
