"""The Keras-style model API: building, summary, fit/evaluate/predict, callbacks, seeds."""
import io
import re

import numpy as np
import pytest

from minicnn import EarlyStopping, Sequential, callbacks, initializers, optimizers, zoo
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                            Input, MaxPooling2D)
from minicnn.progbar import Progbar


def small_problem(rng, n=96):
    """Two linearly separable blobs in 4-D: any working model learns it."""
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def mlp(seed=0, optimizer="adam"):
    model = Sequential([Dense(8, activation="relu", input_shape=(4,)),
                        Dense(2, activation="softmax")], seed=seed)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_summary_matches_keras_counts():
    model = Sequential([Input((28, 28, 1)), Conv2D(32, 3), MaxPooling2D(), Flatten(),
                        Dense(10, activation="softmax")])
    out = []
    model.summary(print_fn=out.append)
    text = out[0]
    assert re.search(r"conv2d \(Conv2D\)\s+│ \(None, 26, 26, 32\)\s+│\s+320 │", text)
    assert "Total params: 54,410" in text
    bn = Sequential([Dense(16, input_shape=(8,)), BatchNormalization()])
    counts = bn.summary(print_fn=lambda s: None)
    assert "Trainable params: 176" in counts and "Non-trainable params: 32" in counts


def test_lenet_parameter_count_matches_notebook():
    model = zoo.lenet5()
    assert model.count_params() == 212_906      # BASELINES.md's Keras figure
    assert model.output_shape == (10,)


def test_add_and_list_build_the_same_model():
    a = Sequential([Dense(3, input_shape=(4,)), Dense(2)], seed=1)
    b = Sequential(seed=1)
    b.add(Dense(3, input_shape=(4,)))
    b.add(Dense(2))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert [l.name for l in b.layers] == ["dense", "dense_1"]


def test_fit_learns_and_returns_history(rng):
    x, y = small_problem(rng)
    model = mlp(optimizer=optimizers.Adam(learning_rate=0.01))
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0, validation_split=0.25)
    assert model.history is history
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 15
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.85
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.85 and np.isfinite(loss)
    probs = model.predict(x)
    assert probs.shape == (len(x), 2) and isinstance(probs, np.ndarray)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_validation_split_takes_the_last_samples_before_shuffling(rng):
    x, y = small_problem(rng, 40)
    model = mlp(optimizer=optimizers.SGD(learning_rate=0.0))   # weights never move
    history = model.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    expected_loss, expected_acc = model.evaluate(x[30:], y[30:], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(expected_loss, rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(expected_acc)


def test_same_seed_same_run(rng):
    x, y = small_problem(rng)
    runs = []
    for _ in range(2):
        model = Sequential([Dense(8, activation="relu", input_shape=(4,)), Dropout(0.3),
                            Dense(2, activation="softmax")], seed=42)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        runs.append(model.fit(x, y, epochs=3, verbose=0).history["loss"])
    assert runs[0] == runs[1]


def test_float64_models_stay_float64(rng):
    x, y = small_problem(rng)
    model = Sequential([Dense(3, input_shape=(4,)), Dense(2, activation="softmax")], dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert model.predict(x).dtype == np.float64


def test_float32_training_never_promotes(rng):
    x, y = small_problem(rng)
    model = mlp()
    model.fit(x.astype(np.float64), y, epochs=1, verbose=0)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert model.predict(x).dtype == np.float32


def test_train_on_batch_reports_loss_before_the_update(rng):
    x, y = small_problem(rng, 32)
    model = mlp()
    before, _ = model.evaluate(x, y, verbose=0)
    loss, acc = model.train_on_batch(x, y)
    assert loss == pytest.approx(before, rel=1e-5)
    after, _ = model.evaluate(x, y, verbose=0)
    assert after < before


def test_get_set_weights_in_keras_order():
    model = Sequential([Dense(3, input_shape=(4,)), BatchNormalization(), Dense(2)])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(4, 3), (3,), (3,), (3,), (3,), (3,), (3, 2), (2,)]
    new = [np.full(s, i, dtype=np.float32) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)


def test_initializers_follow_keras_fan_rules():
    kernel = initializers.get("glorot_uniform")((5, 5, 3, 16), "float64", np.random.default_rng(0))
    limit = np.sqrt(6 / (5 * 5 * 3 + 5 * 5 * 16))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    normal = initializers.RandomNormal(seed=3)((200, 200))
    assert normal.std() == pytest.approx(0.05, rel=0.02)
    np.testing.assert_array_equal(normal, initializers.RandomNormal(seed=3)((200, 200)))
    assert not initializers.get("zeros")((3,)).any()
    he = initializers.get("he_normal")((400, 300), "float64", np.random.default_rng(1))
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)


def test_early_stopping_restores_best_weights(rng):
    x, y = small_problem(rng)
    model = mlp()
    seen = []

    class Record(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["loss"], self.model.get_weights()))
    # monitor training loss in "max" mode: epoch 0 is the "best", so it stops after patience.
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True, verbose=1)
    history = model.fit(x, y, epochs=20, verbose=0, callbacks=[Record(), stopper])
    assert len(history.history["loss"]) == 3
    assert stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    for got, want in zip(model.get_weights(), seen[0][1]):
        np.testing.assert_array_equal(got, want)


def test_custom_callback_stops_training_at_a_loss(rng):
    x, y = small_problem(rng)
    model = mlp()

    class StopAtLoss(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["loss"] <= 0.5:
                self.model.stop_training = True
    history = model.fit(x, y, epochs=100, verbose=0, callbacks=[StopAtLoss()])
    assert history.history["loss"][-1] <= 0.5
    assert all(v > 0.5 for v in history.history["loss"][:-1])


def test_fit_accepts_a_generator_of_batches(rng):
    x, y = small_problem(rng)

    class Batches:
        def __len__(self):
            return 6

        def __iter__(self):
            for i in range(0, 96, 16):
                yield x[i:i + 16], y[i:i + 16]
    model = mlp()
    history = model.fit(Batches(), epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    history = model.fit(iter(list(Batches()) * 10), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_progress_line_looks_like_keras():
    stream = io.StringIO()
    Progbar(938, verbose=1, stream=stream).finish({"loss": 0.1382, "accuracy": 0.95884, "val_loss": 1e-5})
    line = stream.getvalue()
    assert re.fullmatch(r"938/938 ━{20} \d+ms \d+us/step - accuracy: 0\.9588 - loss: 0\.1382 "
                        r"- val_loss: 1\.0000e-05\n", line), line
    stream = io.StringIO()
    Progbar(375, verbose=2, stream=stream).finish({"loss": 0.5})
    assert re.fullmatch(r"375/375 - \d+ms - \d+us/step - loss: 0\.5000\n", stream.getvalue())


def test_fit_prints_epoch_lines(rng, capsys):
    x, y = small_problem(rng, 64)
    mlp().fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "2/2 ━" in out


def test_thread_settings_apply_inside_fit_and_are_restored(rng, monkeypatch):
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_info
    from minicnn import threads
    seen = []

    class Probe(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            seen.append((numba.get_num_threads(), blas))
    before = numba.get_num_threads()
    monkeypatch.setenv("MINICNN_NUM_THREADS", "1")
    x, y = small_problem(rng, 32)
    mlp().fit(x, y, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen and all(n == 1 and set(blas) <= {1} for n, blas in seen)
    assert numba.get_num_threads() == before
    threads.set_num_threads(None)
    assert threads.num_threads() == 1


def test_training_backward_skips_unused_input_gradients_only(rng):
    """need_input_grad=False stops below the first weighted layer; weight gradients agree."""
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(5, activation="tanh"),
                        Dense(3, activation="softmax")], dtype="float64")
    x = rng.standard_normal((6, 4, 4, 1))
    dy = rng.standard_normal((6, 3))
    model.forward(x, training=True)
    dx = model.backward(dy)
    full = [g.copy() for layer in model.layers for g in layer.grads.values()]
    assert dx.shape == x.shape
    assert model.backward(dy, need_input_grad=False) is None
    for got, want in zip((g for layer in model.layers for g in layer.grads.values()), full):
        np.testing.assert_array_equal(got, want)


def test_lambda_callback_calls_each_hook_with_keras_arguments(rng):
    x, y = small_problem(rng, n=32)
    calls = []
    hooks = callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: calls.append(("train_begin",)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch)))
    mlp().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[hooks])
    assert calls == [("train_begin",), ("batch_end", 0), ("batch_end", 1),
                     ("epoch_end", 0, ["accuracy", "loss"]), ("batch_end", 0), ("batch_end", 1),
                     ("epoch_end", 1, ["accuracy", "loss"])]
    with pytest.raises(ValueError, match="'on_epoch_finish' is not a callback hook"):
        callbacks.LambdaCallback(on_epoch_finish=print)
