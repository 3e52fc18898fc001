"""The training loop behind ``Sequential.fit``: epochs, batches, callbacks, validation.

Kept apart from models.py so each file reads in one sitting; ``Sequential`` inherits it.
"""
import dataclasses
import itertools
import math
import numbers

import numpy as np

from kernels import backend
from .callbacks import CallbackList, History
from .progbar import Progbar
from .threads import ThreadChooser, compute_threads, num_threads


@dataclasses.dataclass
class EpochProgress:
    """How far fit has got: the epoch, the batches done in it, and the sums behind its
    running-mean logs (each batch's value times its size). BackupAndRestore saves this
    and, on resume, hands it back (with the History so far) before the first epoch."""
    epoch: int
    step: int = 0
    seen: int = 0
    totals: dict = dataclasses.field(default_factory=dict)
    history: tuple = None        # (History.history, History.epoch) restored from a backup

    def logs(self):
        """The epoch's running means so far: {"loss": …, "accuracy": …}."""
        return {key: total / self.seen for key, total in self.totals.items()}


def check_batch_size(batch_size):
    """Keras's default of 32 for None; otherwise a positive integer, or a clear error."""
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (or None for 32), got {batch_size!r}")
    return int(batch_size)


def check_validation_split(validation_split):
    if (isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)
            or not 0 <= validation_split < 1):
        raise ValueError("validation_split is the fraction of the samples held out for "
                         f"validation, a number in [0, 1) such as 0.1; got {validation_split!r}")


def unpack_validation_data(validation_data):
    """(x_val, y_val) from Keras's forms (x_val, y_val) or (x_val, y_val, None)."""
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 3 \
            and validation_data[2] is None:
        validation_data = validation_data[:2]
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        what = (f"a sequence of {len(validation_data)} items" if isinstance(validation_data, (tuple, list))
                else type(validation_data).__name__)
        raise ValueError(f"validation_data must be a tuple (x_val, y_val); got {what}. minicnn does "
                         "not weight validation samples, so a third item must be None.")
    return validation_data


class TrainingLoop:
    """``fit`` and its helpers; the model supplies _prepare, _as_batch, _train_step, evaluate."""

    @compute_threads()
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_freq=1):
        """Train for ``epochs`` passes over (x, y), or over a generator of (x, y) batches.

        validation_split takes the *last* fraction of the samples, before shuffling,
        exactly as Keras does. ``sample_weight`` (one weight per sample) or ``class_weight``
        ({class: weight}) scale each sample's loss; ``validation_freq=n`` validates every
        n-th epoch only. Returns a ``History`` (also kept as ``model.history``).
        """
        self._require_compiled("fit")
        batch_size = check_batch_size(batch_size)
        if int(validation_freq) < 1:
            raise ValueError(f"validation_freq is a number of epochs, at least 1; got {validation_freq}")
        if isinstance(x, np.ndarray) or backend.is_gpu(x) or isinstance(x, (list, tuple)):
            if y is None:
                raise ValueError("fit(x, y) needs the targets y as well; got y=None. (Only a "
                                 "generator of (x, y) batches is passed without y.)")
            x, y = self._prepare(x, y, "fit")
            check_validation_split(validation_split)
            weights = self._sample_weights(y, sample_weight, class_weight)
            if validation_split:
                if validation_data is not None:
                    raise ValueError("give validation_split or validation_data, not both")
                split = len(x) - int(len(x) * validation_split)
                if split <= 0 or split == len(x):
                    raise ValueError(f"validation_split={validation_split} leaves no training or "
                                     f"no validation samples out of {len(x)}")
                x, validation_data = x[:split], (x[split:], y[split:])
                weights = None if weights is None else weights[:split]
            steps = math.ceil(len(x) / batch_size)
            epoch_batches = lambda: self._array_batches(x, y, weights, batch_size, shuffle)
        else:
            if y is not None or sample_weight is not None or class_weight is not None:
                raise ValueError("when x is a generator of (x, y) batches, leave y, sample_weight "
                                 "and class_weight None")
            steps, source_batches = self._generator_batches(x, steps_per_epoch)
            # Every batch gets the checks fit(x, y) gives whole arrays (label range, shapes).
            epoch_batches = lambda: (self._prepare(xb, yb, "fit (a generator's batch)")
                                     for xb, yb in source_batches())
        if validation_data is not None:
            validation_data = self._prepare(*unpack_validation_data(validation_data),
                                            what="fit (validation_data)")

        history = self.history = History()
        params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callback_list = CallbackList([*(callbacks or []), history], self, params)
        self.stop_training = False
        self.progress = EpochProgress(initial_epoch)
        self.thread_chooser = ThreadChooser.carried_over(self.thread_chooser, num_threads())
        callback_list.on_train_begin()       # a BackupAndRestore may move self.progress on
        if self.progress.history is not None:
            history.history, history.epoch = self.progress.history
        for epoch in range(self.progress.epoch, epochs):
            if self.progress.epoch != epoch:
                self.progress = EpochProgress(epoch)
            if verbose and epochs > 1:
                print(f"Epoch {epoch + 1}/{epochs}")
            callback_list.on_epoch_begin(epoch)
            bar = Progbar(steps, verbose)
            logs = self._run_epoch(epoch, epoch_batches(), bar, callback_list)
            self.thread_chooser.end_epoch()
            if logs is None:        # the loss blew up; the message has been printed
                break
            if validation_data is not None and (epoch + 1) % validation_freq == 0:
                logs.update(self._validation_logs(validation_data, batch_size))
            bar.finish(logs)
            callback_list.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callback_list.on_train_end()
        return history

    def _run_epoch(self, epoch, batches, bar, callback_list):
        """Train on one epoch's batches; returns the running-mean logs, or None on a NaN/inf loss.

        Starts after the ``self.progress.step`` batches a resumed backup had done: they
        are drawn and dropped, so the shuffled order is the one the first run used.
        """
        progress = self.progress
        for step, (xb, yb, *weights) in enumerate(itertools.islice(batches, progress.step, None),
                                                  start=progress.step + 1):
            callback_list.on_train_batch_begin(step - 1)
            xb, yb = self._as_batch(xb, yb)
            with self.thread_chooser.step():
                loss_value, y_pred = self._train_step(xb, yb, *weights)
            if not math.isfinite(loss_value):
                print(f"\nEpoch {epoch + 1}, batch {step}: the loss became {loss_value}; training "
                      "stopped. Lower the learning rate, normalise the inputs (e.g. x / 255) or "
                      "check the labels.")
                self.stop_training = True
                return None
            progress.step, progress.seen = step, progress.seen + len(xb)
            for key, value in {"loss": loss_value, **self._batch_logs(yb, y_pred)}.items():
                progress.totals[key] = progress.totals.get(key, 0.0) + value * len(xb)
            logs = progress.logs()
            callback_list.on_train_batch_end(step - 1, logs)
            bar.update(step, logs)
            if self.stop_training:
                break
        return progress.logs()

    def _validation_logs(self, validation_data, batch_size):
        results = self.evaluate(*validation_data, batch_size=batch_size, verbose=0, return_dict=True)
        return {f"val_{name}": value for name, value in results.items()}

    def _array_batches(self, x, y, weights, batch_size, shuffle):
        """(x, y) or (x, y, sample weights) batches of one epoch; only the indices are
        shuffled, never the data."""
        order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            yield (x[index], y[index]) if weights is None else (x[index], y[index], weights[index])

    @staticmethod
    def _generator_batches(source, steps_per_epoch):
        """(steps, epoch_batches) for an iterable of (x, y) batches, e.g. ImageDataGenerator.flow.

        With steps_per_epoch, batches are drawn from one running iterator (restarted when a
        finite source runs out), as Keras does; without it, each epoch is one pass.
        """
        if steps_per_epoch is None:
            if not hasattr(source, "__len__"):
                raise ValueError("x is a generator without a length; pass steps_per_epoch=")
            return len(source), lambda: iter(source)
        state = {"iterator": iter(source)}

        def epoch_batches():
            for _ in range(steps_per_epoch):
                try:
                    yield next(state["iterator"])
                except StopIteration:
                    state["iterator"] = iter(source)
                    yield next(state["iterator"])
        return steps_per_epoch, epoch_batches
