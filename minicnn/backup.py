"""BackupAndRestore: training that survives being killed, with Keras 3's meaning.

    backup = BackupAndRestore("runs/lenet-backup")
    model.fit(x, y, epochs=60, callbacks=[backup])   # killed in epoch 23…
    model.fit(x, y, epochs=60, callbacks=[backup])   # …the same call carries on from epoch 23

The backup is one ``.npz`` file, written atomically (a crash mid-write leaves the previous
one), holding everything the rest of the run depends on:

- the weights and BatchNormalization's moving statistics, the optimiser's slots and step count;
- where training stood: the epoch, the batches done in it and the sums behind its
  running-mean logs (so a resumed epoch reports the same loss), and the History so far;
- every random state training draws from: the model's generator (shuffling, and the
  masks of Dropout layers without a seed) as it was when the epoch began, so the resumed
  epoch shuffles the same way, and as it was at the backup, with each seeded Dropout's own.

So a run that is interrupted and resumed ends with bit-identical weights and History to
one that never was, when both run on the same number of threads (set
``MINICNN_NUM_THREADS``: a large matrix product's row blocks are summed in an order that
depends on the thread count). Not saved: the state of other callbacks (EarlyStopping's patience
count starts again, as in Keras) and of a data generator passed as ``x``.
"""
import copy
import json
from pathlib import Path

import numpy as np

from .callbacks import Callback
from .saving import (atomic_save_npz, load_weights, model_arrays, read_model, set_optimizer_state,
                     set_rng_states)

BACKUP_KEY = "__backup__"


class BackupAndRestore(Callback):
    """Back up the training state to ``backup_dir`` and resume from it when ``fit`` runs again.

    save_freq: "epoch" (after every epoch), an integer N (after every N batches, counted
        across epochs; a resumed run then restarts inside the epoch it stopped in), or
        False (never write; only restore).
    delete_checkpoint: remove the backup when ``fit`` ends normally (finished, or stopped by
        a callback); keep it with False. An exception or a killed process always keeps it.
    """

    FILENAME = "backup.npz"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        every_batches = isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0
        if not (every_batches or save_freq == "epoch" or save_freq is False):
            raise ValueError(f"save_freq must be 'epoch', a positive number of batches or False, "
                             f"got {save_freq!r}")
        self.backup_dir = Path(backup_dir)
        self.path = self.backup_dir / self.FILENAME
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self._every_batches = save_freq if every_batches else None

    # -- restoring --------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        self._pending_rng_states = None     # restored once the resumed epoch has drawn its order
        if self.path.exists():
            self._restore(*read_model(self.path))

    def _restore(self, config, weights, slots):
        if BACKUP_KEY not in weights:
            raise ValueError(f"{self.path} is not a BackupAndRestore backup (it has no training "
                             "position); delete it or choose another backup_dir")
        backup = json.loads(str(weights.pop(BACKUP_KEY)))
        self._check_same_model(config, backup)
        load_weights(self.model, self.path, weights)
        set_optimizer_state(self.model.optimizer, self.model, self.path, config["compile"]["optimizer"], slots)
        progress = self.model.progress
        progress.epoch, progress.step, progress.seen = backup["epoch"], backup["step"], backup["seen"]
        progress.totals = backup["totals"]
        progress.history = (backup["history"], backup["history_epochs"])
        if progress.step:
            # Mid-epoch: fit redraws this epoch's shuffle from the generator as it was when
            # the epoch began, skips the batches done, then continues from the backup's states.
            self.model.rng.bit_generator.state = backup["epoch_rng_state"]
            self._pending_rng_states = config
        else:
            set_rng_states(self.model, config)

    def _check_same_model(self, saved, backup):
        """Refuse a backup of another architecture, optimiser or batching, saying what differs."""
        where = f"{self.path} was written for a different"
        fix = f"; delete {self.backup_dir} to start afresh, or pass another backup_dir"
        current = json.loads(json.dumps(self.model.get_config()["layers"]))   # tuples -> lists, as saved
        without_names = lambda specs: [(s["class_name"], {k: v for k, v in s["config"].items() if k != "name"})
                                       for s in specs]
        if len(saved["layers"]) != len(current):
            raise ValueError(f"{where} model: it has {len(saved['layers'])} layers, this model "
                             f"{len(current)}{fix}")
        for index, (old, new) in enumerate(zip(without_names(saved["layers"]), without_names(current))):
            if old != new:
                raise ValueError(f"{where} model: layer {index} is {old[0]}({old[1]}) in the backup "
                                 f"but {new[0]}({new[1]}) here{fix}")
        if list(saved["input_shape"]) != list(self.model.input_shape):
            raise ValueError(f"{where} model: input shape {tuple(saved['input_shape'])} in the backup, "
                             f"{self.model.input_shape} here{fix}")
        optimizer = saved["compile"]["optimizer"]["class_name"]
        if optimizer != type(self.model.optimizer).__name__:
            raise ValueError(f"{where} optimiser: {optimizer} in the backup, "
                             f"{type(self.model.optimizer).__name__} here{fix}")
        if backup["step"] and backup["steps"] != self.params.get("steps"):
            raise ValueError(f"{where} batching: it stopped after batch {backup['step']} of "
                             f"{backup['steps']} per epoch, but this fit has {self.params.get('steps')} "
                             f"batches per epoch (same data and batch_size needed to resume mid-epoch){fix}")

    def _restore_pending_rng_states(self):
        if self._pending_rng_states is not None:
            set_rng_states(self.model, self._pending_rng_states)
            self._pending_rng_states = None

    # -- saving -----------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_rng_state = self.model.rng.bit_generator.state

    def on_train_batch_begin(self, batch, logs=None):
        self._restore_pending_rng_states()

    def on_train_batch_end(self, batch, logs=None):
        if self._every_batches:
            self._batches_since_save += 1
            if self._batches_since_save >= self._every_batches:
                self._save()
                self._batches_since_save = 0

    def on_epoch_end(self, epoch, logs=None):
        # a resumed epoch whose batches were all done before the backup draws none: restore here
        self._restore_pending_rng_states()
        if self.save_freq == "epoch":
            self._save(finished_epoch_logs=logs or {})

    def _save(self, finished_epoch_logs=None):
        """Write the backup; after an epoch, as the start of the next one (History, the last
        callback, records the finished epoch after this one runs, so it is added here)."""
        progress, history = self.model.progress, self.model.history
        records, epochs = copy.deepcopy(history.history), list(history.epoch)
        position = {"epoch": progress.epoch, "step": progress.step, "seen": progress.seen,
                    "totals": progress.totals}
        if finished_epoch_logs is not None:
            for key, value in finished_epoch_logs.items():
                records.setdefault(key, []).append(value)
            epochs.append(progress.epoch)
            position = {"epoch": progress.epoch + 1, "step": 0, "seen": 0, "totals": {}}
        backup = {**position, "steps": self.params.get("steps"), "epoch_rng_state": self._epoch_rng_state,
                  "history": records, "history_epochs": epochs}
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(self.path, {**model_arrays(self.model), BACKUP_KEY: np.array(json.dumps(backup))})

    def on_train_end(self, logs=None):
        self._restore_pending_rng_states()
        if self.delete_checkpoint:
            self.path.unlink(missing_ok=True)
            if self.backup_dir.is_dir() and not any(self.backup_dir.iterdir()):
                self.backup_dir.rmdir()
