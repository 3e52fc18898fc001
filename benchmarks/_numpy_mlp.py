"""The benchmark's MLP trained by a hand-written NumPy loop: a floor for minicnn's MLP.

``train_speed.py`` times this loop as a third framework, "numpy", beside minicnn and
PyTorch, on the same batches (the ``mlp`` model only: Flatten, Dense 128 sigmoid,
Dense 10 softmax, sparse cross-entropy, Adam). Each step does only the arithmetic: the
layers' matrix products, bias and activations in place, softmax, the loss and its
gradient, accuracy, and Adam through minicnn's compiled update, its fastest form here
(``kernels._numba_loops.adam_loop``). No layers, no checks, no callbacks: about what
any Python library must spend on this model, whatever its structure. The arithmetic
is minicnn's (up to the order of sums), so both should reach about the same loss.
"""
import numpy as np

from kernels._numba_loops import adam_loop


class NumpyMlp:
    """Dense(sigmoid) then Dense(softmax) on flattened images, trained with Adam.

    ``weights``: [W1 (features, hidden), b1 (hidden,), W2 (hidden, classes), b2 (classes,)],
    the Keras layout ``Sequential.get_weights`` gives. Adam's defaults are Keras's.
    """

    def __init__(self, weights, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.params = [np.array(w, dtype=np.float32) for w in weights]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon
        self.iterations = 0

    def probabilities(self, x):
        """Forward pass. Shapes: x (N, ...) -> hidden (N, hidden), probabilities (N, classes)."""
        w1, b1, w2, b2 = self.params
        hidden = x.reshape(len(x), -1) @ w1
        hidden += b1
        hidden *= 0.5                       # sigmoid(z) = (1 + tanh(z / 2)) / 2, in place
        np.tanh(hidden, out=hidden)
        hidden *= 0.5
        hidden += 0.5
        logits = hidden @ w2
        logits += b2
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return hidden, logits

    def train_step(self, x, labels):
        """One Adam step on a batch. Shapes: x (N, ...), labels (N,) class numbers.
        Returns (the batch's mean cross-entropy, its accuracy), before the update."""
        x = x.reshape(len(x), -1)
        hidden, p = self.probabilities(x)
        rows = np.arange(len(x))
        loss = float(-np.log(np.clip(p[rows, labels], 1e-7, 1 - 1e-7)).sum() / len(x))
        accuracy = np.count_nonzero(p.argmax(axis=1) == labels) / len(x)
        d_logits = p.copy()                  # (p - one_hot) / N
        d_logits[rows, labels] -= 1
        d_logits /= np.float32(len(x))
        d_hidden = d_logits @ self.params[2].T
        d_hidden *= hidden * (1 - hidden)    # sigmoid' in terms of its output
        grads = [np.dot(x.T, d_hidden), d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]
        self._adam(grads)
        return loss, accuracy

    def _adam(self, grads):
        self.iterations += 1
        t = self.iterations
        alpha = np.float32(self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        c1, c2, eps = np.float32(1 - self.beta_1), np.float32(1 - self.beta_2), np.float32(self.epsilon)
        for w, g, m, v in zip(self.params, grads, self.m, self.v):
            adam_loop(w.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), alpha, c1, c2, eps)
