"""Keras code runs with only its import line changed; the Keras names learners reach for."""
import csv

import numpy as np
import pytest

import minicnn
from minicnn import activations, callbacks, layers, losses, models, optimizers, utils
from minicnn.activations import relu

KERAS_WAY_SCRIPT = '''
from minicnn import layers, models, optimizers, callbacks, datasets, utils, losses, activations
from minicnn.activations import relu

LeakyReLU = lambda x: relu(x, alpha=0.1)

model = models.Sequential()
model.add(layers.Conv2D(8, (3, 3), activation=LeakyReLU, input_shape=(12, 12, 1)))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Flatten())
model.add(layers.Dense(16, activation=LeakyReLU))
model.add(layers.Dense(3, activation="softmax"))
model.summary()
model.compile(optimizer=optimizers.Adam(learning_rate=0.01),
              loss=losses.categorical_crossentropy, metrics=["accuracy"])
history = model.fit(x_train, utils.to_categorical(y_train, 3), batch_size=16, epochs=8,
                    validation_split=0.2, verbose=0)
test_loss, test_acc = model.evaluate(x_test, utils.to_categorical(y_test, 3), verbose=0)
'''


def three_blobs(n, seed):
    """Images whose class is which third of the picture is bright: learnable in seconds."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 12, 12, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, :, 4 * label:4 * label + 4] += 1.0
    return x, y


def test_a_script_written_the_keras_way_runs_end_to_end(capsys):
    (x_train, y_train), (x_test, y_test) = three_blobs(240, 0), three_blobs(60, 1)
    namespace = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    exec(KERAS_WAY_SCRIPT, namespace)
    model, history = namespace["model"], namespace["history"]
    assert "leaky_relu(alpha=0.1): exact derivative" in capsys.readouterr().out
    assert isinstance(model.layers[0].activation, activations.ReLU)
    assert model.layers[0].activation.alpha == 0.1
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert namespace["test_acc"] > 0.9          # chance is 1/3


def test_the_keras_module_names_exist():
    from minicnn import datasets
    assert models.Sequential is minicnn.Sequential and callable(models.load_model)
    assert callable(datasets.mnist.load_data) and callable(utils.to_categorical)
    assert callable(optimizers.schedules.ExponentialDecay)
    for name in ("ModelCheckpoint", "ReduceLROnPlateau", "CSVLogger", "EarlyStopping"):
        assert issubclass(getattr(callbacks, name), callbacks.Callback)


# -- activations given as Python functions --------------------------------------------

def test_a_lambda_calling_a_minicnn_activation_is_recognised_exactly():
    for function, expected in [(lambda x: relu(x, alpha=0.1), "leaky_relu(alpha=0.1)"),
                               (activations.tanh, "tanh"), (lambda x: activations.softmax(x), "softmax")]:
        activation = activations.get(function)
        assert repr(activation) == expected and not activation.needs_input
    # Doing anything more than passing the result on is not "the same activation".
    doubled = activations.get(lambda x: 2 * relu(x))
    assert isinstance(doubled, activations.FunctionActivation)


def test_a_softmax_lambda_still_pairs_with_cross_entropy():
    model = models.Sequential([layers.Dense(3, activation=lambda x: activations.softmax(x),
                                            input_shape=(4,))])
    model.compile("sgd", "categorical_crossentropy")
    assert model._fuses_softmax()      # the training step differentiates softmax + CE together


def test_any_elementwise_function_trains_and_summary_names_the_method():
    model = models.Sequential([layers.Dense(4, activation=np.sin, input_shape=(3,)),
                               layers.Dense(1)], seed=0)
    printed = []
    model.summary(print_fn=printed.append)
    assert "dense: sin: central differences" in printed[0]
    model.compile(optimizers.Adam(learning_rate=0.03), "mse")
    x = np.random.default_rng(0).standard_normal((64, 3))
    history = model.fit(x, np.sin(x).sum(axis=1, keepdims=True), epochs=40, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]


def test_a_function_activation_saves_its_name_and_says_why_it_cannot_load(tmp_path):
    model = models.Sequential([layers.Dense(2, activation=np.sin, input_shape=(3,))])
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="Python function 'sin'.*load_weights"):
        models.load_model(tmp_path / "m.npz")


# -- losses as functions --------------------------------------------------------------

def test_loss_functions_return_per_sample_values_and_compile():
    y_true = np.array([[0, 1.0], [1, 0]])
    y_pred = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(losses.categorical_crossentropy(y_true, y_pred),
                               [-np.log(0.8), -np.log(0.6)])
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(np.array([1, 0]), y_pred),
                               [-np.log(0.8), -np.log(0.6)])
    np.testing.assert_allclose(losses.mse(y_true, y_pred), [0.04, 0.16])
    np.testing.assert_allclose(losses.binary_crossentropy(np.array([[1.0], [0]]), np.array([[0.9], [0.2]])),
                               [-np.log(0.9), -np.log(0.8)])
    assert isinstance(losses.get(losses.categorical_crossentropy), losses.CategoricalCrossentropy)
    with pytest.raises(ValueError, match="subclass minicnn.losses.Loss"):
        losses.get(lambda t, p: (t - p) ** 2)


# -- fit, evaluate, train_on_batch signatures -----------------------------------------

def small_model(seed=0, optimizer="sgd"):
    model = models.Sequential([layers.Dense(5, activation="tanh", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")], seed=seed)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_sample_weight_scales_each_samples_loss_and_gradient():
    x, y = data(8)
    weights = np.arange(8, dtype=float)
    model = small_model()
    per_sample = losses.sparse_categorical_crossentropy(y, model.predict(x))
    # Keras: sum(w_i * loss_i) / N, measured before the update.
    loss = model.train_on_batch(x, y, sample_weight=weights, return_dict=True)["loss"]
    assert loss == pytest.approx((weights * per_sample).mean(), rel=1e-5)
    # Weight 2 everywhere = twice the gradient; weight 1 = no weights.
    plain = small_model().gradients(x, y)
    for g2, g1 in zip(small_model().gradients(x, y, sample_weight=np.full(8, 2.0)), plain):
        np.testing.assert_allclose(g2, 2 * g1, rtol=1e-5)


def test_class_weight_is_sample_weight_by_label():
    x, y = data(30)
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}
    a, b = small_model(), small_model()
    a.fit(x, y, epochs=2, batch_size=10, class_weight=class_weight, verbose=0)
    b.fit(x, y, epochs=2, batch_size=10, sample_weight=np.array([class_weight[c] for c in y]),
          verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb)
    with pytest.raises(ValueError, match="not both"):
        small_model().fit(x, y, class_weight=class_weight, sample_weight=np.ones(30), verbose=0)
    with pytest.raises(ValueError, match=r"no weight for classes \[2\]"):
        small_model().fit(x, y, class_weight={0: 1, 1: 1}, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(30,\)"):
        small_model().fit(x, y, sample_weight=np.ones(29), verbose=0)


def test_validation_freq_and_evaluate_return_dict():
    x, y = data(50)
    model = small_model()
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append("val_loss" in logs))
    model.fit(x, y, epochs=4, validation_split=0.2, validation_freq=2, callbacks=[record], verbose=0)
    assert seen == [False, True, False, True]
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(result) == ["loss", "accuracy"]
    assert [result["loss"], result["accuracy"]] == model.evaluate(x, y, verbose=0)


# -- gradients, callable layers, count_params -----------------------------------------

def test_gradients_are_what_one_sgd_step_applies_and_change_nothing():
    x = np.random.default_rng(0).standard_normal((6, 5, 5, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    model = models.Sequential([layers.Conv2D(3, 3, activation="relu", input_shape=(5, 5, 2)),
                               layers.BatchNormalization(), layers.Flatten(), layers.Dropout(0.3),
                               layers.Dense(3, activation="softmax")], seed=3)
    model.compile(optimizers.SGD(learning_rate=1.0), "sparse_categorical_crossentropy")
    before, rng_state = model.get_weights(), model.rng.bit_generator.state
    trainable_before = [w.copy() for w in model.trainable_weights]
    grads = model.gradients(x, y)
    for w_before, w_after in zip(before, model.get_weights()):   # moving statistics included
        np.testing.assert_array_equal(w_before, w_after)
    assert model.rng.bit_generator.state == rng_state
    assert [g.shape for g in grads] == [w.shape for w in model.trainable_weights]
    model.train_on_batch(x, y)             # the same dropout mask: the generator was restored
    for w0, g, w1 in zip(trainable_before, grads, model.trainable_weights):
        np.testing.assert_allclose(w1, w0 - g, rtol=1e-4, atol=1e-6)


def test_layers_and_models_are_callable():
    dense = layers.Dense(2, activation="relu")
    y = dense(np.ones((3, 4)))
    assert y.shape == (3, 2) and y.dtype == np.float32 and dense.built
    model = small_model()
    np.testing.assert_allclose(model(np.ones((2, 4))), model.predict(np.ones((2, 4))))


def test_count_params_counts_batchnorm_moving_statistics_as_keras_does():
    bn = layers.BatchNormalization()
    bn.build((5, 5, 8))
    assert bn.count_params() == 4 * 8 and bn.count_state() == 2 * 8   # Keras: 32, 16 of them frozen
    model = models.Sequential([layers.Dense(8, input_shape=(3,)), layers.BatchNormalization()])
    printed = []
    model.summary(print_fn=printed.append)
    assert model.count_params() == 32 + 32
    assert "Total params: 64" in printed[0] and "Non-trainable params: 16" in printed[0]


def test_plot_model_draws_the_layers_in_text(tmp_path, capsys):
    model = small_model()
    utils.plot_model(model, to_file=tmp_path / "model.png")
    text = capsys.readouterr().out
    assert "dense (Dense)" in text and "(None, 3)" in text and "▼" in text
    assert (tmp_path / "model.txt").read_text().startswith("┌")


# -- callbacks and schedules ----------------------------------------------------------

def test_early_stopping_restores_the_best_weights():
    x, y = data(40)
    model = small_model(optimizer=optimizers.SGD(learning_rate=5.0))   # too big: it gets worse
    snapshots = []
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(
        (logs["val_loss"], model.get_weights())))
    stop = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    model.fit(x, y, epochs=30, validation_split=0.25, callbacks=[keep, stop], verbose=0)
    best_loss, best_weights = min(snapshots, key=lambda item: item[0])
    assert len(snapshots) < 30 and best_loss < snapshots[-1][0]
    for expected, restored in zip(best_weights, model.get_weights()):
        np.testing.assert_array_equal(expected, restored)


def test_reduce_lr_on_plateau_lowers_the_rate_after_patience():
    model = small_model(optimizer=optimizers.SGD(learning_rate=0.1))
    model.stop_training = False
    reduce = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1,
                                         min_lr=0.02)
    reduce.set_model(model)
    reduce.on_train_begin()
    rates = []
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        reduce.on_epoch_end(epoch, {"loss": loss})
        rates.append(model.optimizer.learning_rate)
    # Keras's counting: no improvement after epoch 0, so halve when 2 epochs have waited;
    # the cooldown epoch after a cut clears the wait but counts itself; never below min_lr.
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])


def test_model_checkpoint_and_csv_logger_write_files(tmp_path):
    x, y = data(40)
    model = small_model()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"),
                                           save_weights_only=True)
    best = callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy",
                                     save_best_only=True)
    logger = callbacks.CSVLogger(tmp_path / "log.csv")
    model.fit(x, y, epochs=3, validation_split=0.25, callbacks=[checkpoint, best, logger], verbose=0)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-01.npz", "ckpt-02.npz", "ckpt-03.npz"]
    restored = models.load_model(tmp_path / "best.npz")
    assert restored.evaluate(x[30:], y[30:], verbose=0)[1] == max(model.history.history["val_accuracy"])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert float(rows[2]["loss"]) == pytest.approx(model.history.history["loss"][2])
    callbacks.CSVLogger(tmp_path / "log.csv", append=True)   # appending keeps the earlier rows
    model.fit(x, y, epochs=1, callbacks=[callbacks.CSVLogger(tmp_path / "log.csv", append=True)],
              verbose=0)
    assert len(list(csv.DictReader(open(tmp_path / "log.csv")))) == 4


def test_exponential_decay_sets_each_steps_learning_rate(tmp_path):
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    stair = optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True)
    assert [schedule(s) for s in (0, 1, 2)] == pytest.approx([0.1, 0.1 * 0.5 ** 0.5, 0.05])
    assert [stair(s) for s in (0, 1, 2, 3)] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    model = small_model(optimizer=optimizers.SGD(learning_rate=stair))
    x, y = data(8)
    used = []
    for _ in range(4):
        model.train_on_batch(x, y)
        used.append(model.optimizer.learning_rate)
    assert used == pytest.approx([0.1, 0.1, 0.05, 0.05])   # step 0 uses schedule(0)
    model.save(tmp_path / "m.npz")                         # the schedule is saved with it
    assert models.load_model(tmp_path / "m.npz").optimizer.schedule.get_config() == stair.get_config()
    with pytest.raises(ValueError, match="schedule"):
        model.fit(x, y, callbacks=[callbacks.ReduceLROnPlateau()], verbose=0)
