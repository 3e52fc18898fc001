"""Weight penalties added to the loss: Keras's l1, l2 and l1_l2.

Keras's L2 penalty is ``l2 · Σw²`` with no ½, so its gradient is ``2 · l2 · w``.
"""
from kernels.backend import get_array_module


class L1L2:
    """penalty(w) = l1·Σ|w| + l2·Σw²."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def penalty(self, w):
        xp = get_array_module(w)
        total = 0.0
        if self.l1:
            total += self.l1 * float(xp.abs(w).sum())
        if self.l2:
            total += self.l2 * float((w * w).sum())
        return total

    def gradient(self, w):
        """d penalty / d w, same shape and dtype as w."""
        xp = get_array_module(w)
        grad = xp.zeros_like(w)
        if self.l1:
            grad += w.dtype.type(self.l1) * xp.sign(w)
        if self.l2:
            grad += w.dtype.type(2 * self.l2) * w
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def l1(l1=0.01):
    return L1L2(l1=l1)


def l2(l2=0.01):
    return L1L2(l2=l2)


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1=l1, l2=l2)


def get(identifier):
    """None, a regulariser, a name ('l1', 'l2', 'l1_l2') or a saved config."""
    if identifier is None or isinstance(identifier, L1L2):
        return identifier
    if isinstance(identifier, dict):
        return L1L2(**identifier)
    makers = {"l1": l1, "l2": l2, "l1_l2": l1_l2}
    if identifier in makers:
        return makers[identifier]()
    raise ValueError(f"unknown regularizer {identifier!r}; use one of {sorted(makers)} or None")
