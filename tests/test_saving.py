"""save_weights / load_weights / save / load_model: round trips, resumption, damage."""
import io
import json
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import predict_in_fresh_process

from minicnn import Sequential, load_model, optimizers, saving
from minicnn.saving import SavedFileError
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
    with pytest.raises(SavedFileError, match="holds Python objects"):
        load_model(path)


def test_weights_only_file_explains_itself(tmp_path):
    convnet().save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="load_weights"):
        load_model(tmp_path / "w.npz")


def test_layer_names_with_dots_load(tmp_path):
    model = Sequential([Dense(3, name="block.1.dense", input_shape=(4,)), Dense(2, name="out.v2")])
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert [layer.name for layer in loaded.layers] == ["block.1.dense", "out.v2"]
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_custom_metric_needs_custom_objects_and_says_so(tmp_path):
    def top_half(y_true, y_pred):
        return float((y_pred.max(axis=1) > 0.5).mean())

    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", top_half])
    model.save(tmp_path / "m.npz")
    with pytest.raises(SavedFileError, match=r"custom_objects=\{'top_half': top_half\}"):
        load_model(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz", custom_objects={"top_half": top_half})
    assert [name for name, _ in loaded.metrics] == ["accuracy", "top_half"]


def test_model_saved_before_build_loads_and_builds_later(tmp_path):
    model = Sequential([Dense(3), Dense(2)])
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert not loaded.built
    assert loaded.predict(np.zeros((2, 5))).shape == (2, 2)


def test_sequential_config_round_trip():
    model = convnet()
    again = Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    assert again.count_params() == model.count_params()


def test_optimizer_state_is_generic_and_refuses_unknown_names():
    nadam = optimizers.Nadam()
    nadam.apply([np.ones(3)], [np.ones(3)])
    scalars, slots = nadam.get_state()
    assert set(scalars) == {"iterations", "_u_product"} and set(slots) == {("m", 0), ("v", 0)}
    fresh = optimizers.Nadam()
    fresh.set_state(scalars, slots)
    assert fresh._u_product == nadam._u_product and fresh.iterations == 1
    with pytest.raises(ValueError, match=r"has no state named \['apply'\]"):
        fresh.set_state({"apply": 0}, {})
    assert callable(fresh.apply)


def edit_config(path, out, edit):
    """Rewrite the JSON description of a saved model with ``edit(config)``."""
    arrays = saving.read_npz(path)
    config = json.loads(str(arrays[saving.CONFIG_KEY]))
    edit(config)
    arrays[saving.CONFIG_KEY] = np.array(json.dumps(config))
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["compile"]["optimizer"]["state"].update(get_config=1), "no state named"),
    (lambda c: c["compile"]["optimizer"].pop("config"), "KeyError"),
    (lambda c: c["compile"]["optimizer"]["config"].update(beta_9=1), "TypeError"),
    (lambda c: c["compile"]["optimizer"].update(class_name="Lion"), "unknown optimizer class"),
    (lambda c: c["layers"][0].update(class_name="Conv9D"), "unknown layer class"),
    (lambda c: c.update(rng_state="abc"), "damaged"),
])
def test_bad_optimizer_and_model_json_is_a_saved_file_error(tmp_path, edit, words):
    x, y = data()
    model = convnet()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    bad = edit_config(tmp_path / "m.npz", tmp_path / "bad.npz", edit)
    with pytest.raises(SavedFileError, match=words) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_optimizer_slot_of_the_wrong_shape_is_refused(tmp_path):
    x, y = data()
    model = convnet()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    arrays = saving.read_npz(tmp_path / "m.npz")
    arrays["__optimizer__.m.0"] = np.zeros(7, np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SavedFileError, match=r"slot 'm' of parameter 0 has shape \(7,\)"):
        load_model(tmp_path / "bad.npz")


def test_npy_header_claiming_a_huge_shape_names_the_file(tmp_path):
    """A header promising 10^12 floats must not make minicnn allocate 4 TB."""
    path = tmp_path / "m.npz"
    Sequential([Dense(2, input_shape=(3,))]).save(path)
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bad, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "000.dense.kernel.npy":
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
                content = header.getvalue() + content[-24:]
            target.writestr(name, content)
    with pytest.raises(SavedFileError, match=r"declares shape \(1000000000000,\)") as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_fuzzed_files_fail_only_with_saved_file_error(tmp_path):
    """Byte flips, truncations and header edits, fixed seed: load or raise SavedFileError."""
    x, y = data(16)
    model = convnet()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    raw = path.read_bytes()
    rng = np.random.default_rng(2024)
    damaged = []
    for position in rng.integers(0, len(raw), 400):              # single-byte flips
        copy = bytearray(raw)
        copy[position] ^= int(rng.integers(1, 256))
        damaged.append(bytes(copy))
    damaged += [raw[:n] for n in rng.integers(0, len(raw), 40)]  # truncations
    for old, new in [(b"'descr': '<f4'", b"'descr': '|O8'"), (b"'descr': '<f4'", b"'descr': '<f8'"),
                     (b"'fortran_order': False", b"'fortran_order': True "),
                     (b"'shape': (", b"'shape': (9"), (b"{'descr'", b"['descr'")]:
        damaged.append(raw.replace(old, new, 1))                 # header edits
    failures = 0
    for index, content in enumerate(damaged):
        bad = tmp_path / f"bad{index}.npz"
        bad.write_bytes(content)
        try:
            load_model(bad)
        except SavedFileError as error:
            assert str(bad) in str(error)
            failures += 1
    assert failures > len(damaged) // 2        # most damage is detected (CRC, headers, JSON)


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"the folder {tmp_path / 'nope'} does not exist"):
        Sequential([Dense(2, input_shape=(3,))]).save(tmp_path / "nope" / "m.npz")


def test_threads_saving_to_one_path_do_not_collide(tmp_path):
    model = Sequential([Dense(64, input_shape=(64,))])
    path = tmp_path / "m.npz"
    errors = []

    def save():
        try:
            for _ in range(5):
                model.save(path)
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    np.testing.assert_array_equal(load_model(path).get_weights()[0], model.get_weights()[0])


def test_temporary_file_of_a_killed_save_is_removed_by_the_next(tmp_path):
    path = tmp_path / "m.npz"
    script = (
        "import os, signal, sys\n"
        "from minicnn import Sequential, saving\n"
        "from minicnn.layers import Dense\n"
        "def killed(f, **arrays):\n"
        "    f.write(b'half an archive'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "saving.np.savez = killed\n"
        f"Sequential([Dense(2, input_shape=(3,))]).save(r'{path}')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    assert result.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]   # the leftover
    Sequential([Dense(2, input_shape=(3,))]).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
