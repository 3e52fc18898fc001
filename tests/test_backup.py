"""BackupAndRestore: an interrupted and resumed run is bit-identical to an uninterrupted one."""
import numpy as np
import pytest

import minicnn
from minicnn import Callback, Sequential
from minicnn.callbacks import BackupAndRestore
from minicnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

EPOCHS, BATCH = 4, 8      # 64 samples: 8 batches per epoch


class Interrupted(Exception):
    """Stands in for a killed process."""


class InterruptAfter(Callback):
    """Raise after global batch ``batch`` (counted from 1) or after epoch ``epoch`` (from 1)."""

    def __init__(self, batch=None, epoch=None):
        super().__init__()
        self.batch, self.epoch, self.seen = batch, epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batch:
            raise Interrupted

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Interrupted


def make_model(units=16):
    """Shuffling, BatchNormalization, a Dropout on the model's generator and one with its own seed."""
    model = Sequential([
        Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1)),
        BatchNormalization(),
        MaxPooling2D((2, 2)),
        Dropout(0.3),
        Flatten(),
        Dense(units, activation="relu"),
        Dropout(0.4, seed=7),
        Dense(3, activation="softmax"),
    ], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=64)
    return x, y, (x[:16], y[:16])


def fit(model, data, callbacks):
    x, y, validation = data
    return model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=validation, verbose=0,
                     callbacks=callbacks)


def assert_identical(model, history, reference_model, reference_history):
    assert history.epoch == reference_history.epoch == list(range(EPOCHS))
    assert history.history == reference_history.history            # exact floats, every key
    for got, want in zip(model.get_weights(), reference_model.get_weights()):
        assert np.array_equal(got, want)                           # bit-identical, BN statistics too
    assert model.optimizer.iterations == reference_model.optimizer.iterations
    assert model.rng.bit_generator.state == reference_model.rng.bit_generator.state
    assert model.layers[6].get_rng_state() == reference_model.layers[6].get_rng_state()


@pytest.fixture
def reference(data):
    model = make_model()
    return model, fit(model, data, [])


@pytest.mark.parametrize("save_freq, interrupt", [
    ("epoch", {"epoch": 2}),          # killed right after the backup of epoch 2
    ("epoch", {"batch": 21}),         # killed in epoch 3: its first 5 batches are redone
    (3, {"batch": 12}),               # mid-epoch backup at step 4 of epoch 2, killed at once
    (3, {"batch": 14}),               # killed two batches after that backup
    (5, {"batch": 8}),                # backup after step 5 of epoch 1, killed at the epoch's last batch
    (8, {"epoch": 1}),                # a backup after the last batch, killed before the next epoch
])
def test_interrupted_and_resumed_run_is_bit_identical(data, reference, tmp_path, save_freq, interrupt):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupted):
        fit(make_model(), data, [BackupAndRestore(backup_dir, save_freq=save_freq), InterruptAfter(**interrupt)])
    assert (backup_dir / "backup.npz").exists()
    resumed = make_model()               # a fresh process builds the model again
    history = fit(resumed, data, [BackupAndRestore(backup_dir, save_freq=save_freq)])
    assert_identical(resumed, history, *reference)
    assert not backup_dir.exists(), "the backup is deleted when fit ends normally"


def test_twice_interrupted_run_is_bit_identical(data, reference, tmp_path):
    backup_dir = tmp_path / "backup"
    for interrupt in (5, 11):             # each attempt counts batches from its own start
        with pytest.raises(Interrupted):
            fit(make_model(), data, [BackupAndRestore(backup_dir, save_freq=2), InterruptAfter(batch=interrupt)])
    resumed = make_model()
    assert_identical(resumed, fit(resumed, data, [BackupAndRestore(backup_dir, save_freq=2)]), *reference)


def test_kept_backup_resumes_a_finished_run_without_training(data, reference, tmp_path):
    backup_dir = tmp_path / "backup"
    fit(make_model(), data, [BackupAndRestore(backup_dir, delete_checkpoint=False)])
    assert (backup_dir / "backup.npz").exists()
    again = make_model()
    batches = InterruptAfter(batch=1)     # would raise if a single batch were trained
    history = fit(again, data, [BackupAndRestore(backup_dir, delete_checkpoint=False), batches])
    assert batches.seen == 0
    assert_identical(again, history, *reference)


def test_backup_of_another_architecture_is_refused(data, tmp_path):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupted):
        fit(make_model(), data, [BackupAndRestore(backup_dir), InterruptAfter(epoch=1)])
    other = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(3, activation="softmax")], seed=0)
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="different model: it has 8 layers, this model 2"):
        fit(other, data, [BackupAndRestore(backup_dir)])
    wider = make_model(units=17)                              # same layers, one of them wider
    with pytest.raises(ValueError, match="layer 5 is Dense.*'units': 16.*'units': 17"):
        fit(wider, data, [BackupAndRestore(backup_dir)])
    sgd = make_model()
    sgd.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="optimiser: Adam in the backup, SGD here"):
        fit(sgd, data, [BackupAndRestore(backup_dir)])


def test_mid_epoch_backup_needs_the_same_batching(data, tmp_path):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupted):
        fit(make_model(), data, [BackupAndRestore(backup_dir, save_freq=3), InterruptAfter(batch=3)])
    x, y, _ = data
    with pytest.raises(ValueError, match="batch 3 of 8 per epoch, but this fit has 4"):
        make_model().fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[BackupAndRestore(backup_dir)])


@pytest.mark.parametrize("save_freq", [0, -1, "batch", 1.5, True])
def test_bad_save_freq_is_refused(save_freq, tmp_path):
    with pytest.raises(ValueError, match="save_freq must be 'epoch', a positive number"):
        BackupAndRestore(tmp_path, save_freq=save_freq)


def test_save_model_keeps_a_seeded_dropouts_generator(data, tmp_path):
    model = make_model()
    fit(model, data, [])
    model.save(tmp_path / "model.npz")
    loaded = minicnn.load_model(tmp_path / "model.npz")
    assert loaded.layers[6].get_rng_state() == model.layers[6].get_rng_state()
    x = np.ones((4, 16), "float32")
    assert np.array_equal(loaded.layers[6].forward(x, training=True), model.layers[6].forward(x, training=True))
