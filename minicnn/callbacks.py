"""Keras-style callbacks: hooks that run during ``fit``.

A callback sees ``self.model`` and ``self.params`` ({"epochs", "steps", "verbose"}) and
can end training by setting ``self.model.stop_training = True``.

    EarlyStopping, ReduceLROnPlateau, ModelCheckpoint   watch a logged value ("val_loss")
    CSVLogger                                           writes each epoch's logs to a file
"""
import csv
import io
import os
import warnings


class Callback:
    """Base class: override the hooks you need. ``logs`` is a dict of floats."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...


class CallbackList:
    """Calls the same hook on every callback, in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def __getattr__(self, hook):
        def call_all(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)
        return call_all


class History(Callback):
    """Records each epoch's logs: ``history.history["val_accuracy"]`` is a list of floats."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class MonitorCallback(Callback):
    """Shared by the callbacks that watch one logged value for improvement.

    ``mode="auto"`` means "max" for accuracies and AUCs, "min" for everything else; a
    change counts as an improvement only when it beats the best by more than ``min_delta``.
    """

    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{type(self).__name__} mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if any(word in monitor for word in ("acc", "auc")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def monitored(self, logs):
        """The watched value in ``logs``, or None (with a warning) when it was not logged."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__} is watching {self.monitor!r}, which is not among "
                          f"the logged values {sorted(logs or {})}; it does nothing this epoch.",
                          stacklevel=3)
        return value


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    As in Keras 3, ``restore_best_weights=True`` restores the best epoch's weights at
    the end of training even when training was not stopped early.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def on_epoch_end(self, epoch, logs=None):
        current = self.monitored(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only reset patience when the baseline is beaten too.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs, then wait ``cooldown`` epochs before watching again; never
    below ``min_lr``. Keras's defaults.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau factor must be in (0, 1), got {factor}")
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, logs=None):
        if self.model.optimizer.schedule is not None:
            raise ValueError("ReduceLROnPlateau cannot change a learning rate that a schedule "
                             "sets; use a plain number as learning_rate=")
        self.wait, self.cooldown_left, self.best = 0, 0, None

    def on_epoch_end(self, epoch, logs=None):
        current = self.monitored(logs)
        if current is None:
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        optimizer = self.model.optimizer
        if self.wait >= self.patience and optimizer.learning_rate > self.min_lr:
            optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{optimizer.learning_rate}.")
            self.cooldown_left, self.wait = self.cooldown, 0


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary file, so it is never half-written."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(temporary, path)


class ModelCheckpoint(MonitorCallback):
    """Save the model (or only its weights) after every epoch, or only when ``monitor``
    improved (``save_best_only``). ``filepath`` may name the epoch and logged values,
    as in Keras: ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"`` (epoch counted from 1).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode, 0.0)
        if save_freq != "epoch":
            raise ValueError("minicnn's ModelCheckpoint saves once per epoch: use save_freq='epoch'")
        self.filepath, self.verbose = os.fspath(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.best = initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = self.monitored(logs)
            if current is None or not self._is_improvement(current, self.best):
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                      f"{current}, saving model to {path}")
            self.best = current
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` (from 0, as Keras writes it) and the logs in
    sorted order. The whole file is rewritten atomically each epoch, so it is never
    left half-written; ``append=True`` keeps the rows of an earlier run.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        self.rows, self.keys = [], None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as file:
                self.rows = list(csv.reader(file, delimiter=self.separator))
            self.keys = self.rows[0][1:] if self.rows else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self.rows.append(["epoch", *self.keys])
        self.rows.append([epoch, *(logs.get(key, "NA") for key in self.keys)])
        text = io.StringIO()
        csv.writer(text, delimiter=self.separator, lineterminator="\n").writerows(self.rows)
        atomic_write_text(self.filename, text.getvalue())


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: …)``."""

    def __init__(self, **hooks):
        super().__init__()
        for name, function in hooks.items():
            if not hasattr(Callback, name):
                raise ValueError(f"{name!r} is not a callback hook")
            setattr(self, name, function)


from .backup import BackupAndRestore  # noqa: E402  (below Callback, which it extends)
