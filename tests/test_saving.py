"""save_weights / load_weights / save / load_model: round trips, resumption, damage."""
import zipfile

import numpy as np
import pytest
from conftest import predict_in_fresh_process

from minicnn import Sequential, load_model, optimizers, saving
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten, LeakyReLU,
                            MaxPooling2D)


def convnet(seed=0):
    model = Sequential([
        Conv2D(4, 3, padding="same", input_shape=(8, 8, 1)), BatchNormalization(), LeakyReLU(0.1),
        MaxPooling2D(), Dropout(0.25), Flatten(), Dense(10, activation="softmax",
                                                         kernel_regularizer="l2")], seed=seed)
    model.compile(optimizers.Nadam(), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def data(n=64):
    rng = np.random.default_rng(5)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


def test_weights_round_trip(tmp_path):
    x, y = data()
    model = convnet()
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    other = convnet(seed=99)
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(model.predict(x), other.predict(x))


def test_load_weights_with_wrong_shape_names_layer_and_shapes(tmp_path):
    convnet().save_weights(tmp_path / "w.npz")
    wider = Sequential([
        Conv2D(5, 3, padding="same", input_shape=(8, 8, 1)), BatchNormalization(), LeakyReLU(0.1),
        MaxPooling2D(), Dropout(0.25), Flatten(), Dense(10, activation="softmax")])
    with pytest.raises(ValueError, match=r"conv2d.*kernel.*\(3, 3, 1, 5\).*\(3, 3, 1, 4\)"):
        wider.load_weights(tmp_path / "w.npz")
    smaller = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(10)])
    with pytest.raises(ValueError, match="holds 8 weight arrays but the model has 2"):
        smaller.load_weights(tmp_path / "w.npz")


def test_saved_model_predicts_identically_in_a_fresh_process(tmp_path):
    x, y = data()
    model = convnet()
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "model.npz")
    fresh = predict_in_fresh_process(tmp_path / "model.npz", x, tmp_path)
    np.testing.assert_array_equal(fresh, model.predict(x))


def test_resumed_training_continues_the_same_run(tmp_path):
    x, y = data()
    straight = convnet()
    losses = straight.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    first = convnet()
    first.fit(x, y, epochs=1, batch_size=16, verbose=0)
    first.save(tmp_path / "model.npz")
    resumed = load_model(tmp_path / "model.npz")
    later = resumed.fit(x, y, epochs=3, initial_epoch=1, batch_size=16, verbose=0).history["loss"]
    np.testing.assert_allclose(later, losses[1:], rtol=1e-6)


def test_crash_mid_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = convnet()
    model.save(path)
    before = path.read_bytes()

    def exploding_savez(file, **arrays):
        file.write(b"partial garbage")
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(saving.np, "savez", exploding_savez)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]          # no temporary file left behind


def test_truncated_and_tampered_files_fail_cleanly(tmp_path):
    path = tmp_path / "model.npz"
    convnet().save(path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated, corrupted"):
        load_model(truncated)
    tampered = tmp_path / "tampered.npz"
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("000.conv2d.kernel.npy")
    raw[info.header_offset + 100] ^= 0xFF            # flip bits inside stored array data
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a readable minicnn archive"):
        load_model(tampered)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"__model_config__": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="not a readable minicnn archive"):
        load_model(path)


def test_weights_only_file_explains_itself(tmp_path):
    convnet().save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="load_weights"):
        load_model(tmp_path / "w.npz")
