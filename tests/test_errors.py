"""The mistakes learners make get errors that name the problem and the fix."""
import numpy as np
import pytest

from minicnn import Sequential, optimizers
from minicnn.layers import (Conv2D, Dense, Flatten, GlobalAveragePooling2D, MaxPooling2D,
                            ZeroPadding2D)


def test_dense_on_images_says_add_flatten():
    with pytest.raises(ValueError, match=r"(?s)dense.*\(None, 28, 28, 1\).*Flatten\(\)"):
        Sequential([Dense(10, input_shape=(28, 28, 1))])


def test_dense_without_flatten_on_2d_images():
    model = Sequential([Dense(128, activation="sigmoid"), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    with pytest.raises(ValueError, match=r"(?s)\(None, 28, 28\).*Flatten"):
        model.fit(np.zeros((8, 28, 28), np.float32), np.zeros(8, int), verbose=0)


@pytest.mark.parametrize("loss, labels", [
    ("sparse_categorical_crossentropy", np.arange(10)),
    ("categorical_crossentropy", np.eye(10)),
])
def test_too_few_output_units_fails_before_training(loss, labels):
    model = Sequential([Flatten(input_shape=(4, 4)), Dense(5, activation="softmax")])
    model.compile("adam", loss)
    weights = model.get_weights()
    with pytest.raises(ValueError, match="units"):
        model.fit(np.zeros((10, 4, 4), np.float32), labels, verbose=0)
    for got, want in zip(model.get_weights(), weights):   # nothing was trained
        np.testing.assert_array_equal(got, want)


def test_integer_labels_with_categorical_loss_suggest_the_fix():
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="to_categorical.*sparse_categorical_crossentropy"):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 2, 1]), verbose=0)


def test_one_hot_labels_with_sparse_loss_suggest_the_fix():
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="one-hot.*categorical_crossentropy"):
        model.fit(np.zeros((3, 2)), np.eye(3), verbose=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_loss_stops_training_naming_epoch_and_batch(capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32) * 1e3
    model = Sequential([Dense(8, activation="relu", input_shape=(3,)), Dense(1)], seed=0)
    model.compile(optimizers.SGD(learning_rate=10.0), "mse")
    history = model.fit(x, x[:, :1] ** 2, batch_size=8, epochs=5, verbose=0)
    out = capsys.readouterr().out
    assert "Epoch 1, batch" in out and "training stopped" in out
    assert model.stop_training
    assert len(history.history.get("loss", [])) == 0


def test_fit_before_compile():
    model = Sequential([Dense(2, input_shape=(3,))])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((2, 3)), np.zeros(2))


def test_wrong_input_shape_names_both_shapes():
    model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\).*\(5, 28, 28\).*x\[\.\.\., None\]"):
        model.fit(np.zeros((5, 28, 28)), np.zeros(5, int), verbose=0)


def test_empty_data():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="no samples"):
        model.fit(np.zeros((0, 3)), np.zeros((0, 2)))


def test_mismatched_sample_counts():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="5 samples but y has 4"):
        model.fit(np.zeros((5, 3)), np.zeros((4, 2)))


def test_a_python_activation_that_is_not_elementwise_is_refused_clearly():
    # Centering mixes positions: no elementwise derivative exists, and the build-time
    # finite-difference check says so instead of training on a wrong gradient.
    with pytest.raises(ValueError, match=r"(?s)elementwise.*finite differences"):
        Dense(10, activation=lambda x: x - x.mean(axis=-1, keepdims=True))
    with pytest.raises(ValueError, match="same shape"):
        Dense(10, activation=lambda x: x.sum(axis=-1))


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="relu"):
        Dense(3, activation="relu6")
    with pytest.raises(ValueError, match="glorot_uniform"):
        Dense(3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="same"):
        Conv2D(3, 3, padding="full")


@pytest.mark.parametrize("filters", [0, -2, 2.5])
def test_conv2d_filters_must_be_a_positive_integer(filters):
    with pytest.raises(ValueError, match=rf"filters .* positive integer, such as 32; got {filters}"):
        Conv2D(filters, 3)


def test_numpy_integers_are_integers():
    layer = Conv2D(np.int64(4), kernel_size=np.int64(3), strides=np.int32(1))
    assert layer.kernel_size == (3, 3) and layer.filters == 4
    Sequential([ZeroPadding2D(np.int64(1), input_shape=(4, 4, 1)), MaxPooling2D(np.int64(2))])


@pytest.mark.parametrize("padding", [-1, (1, -1), ((1, 2), (0,)), "same"])
def test_zero_padding_must_be_counts(padding):
    with pytest.raises(ValueError, match=r"ZeroPadding2D padding .* integer >= 0"):
        ZeroPadding2D(padding)


def test_global_average_pooling_on_a_flat_input():
    with pytest.raises(ValueError, match=r"GlobalAveragePooling2D .*\(None, 16\).*after a Conv2D"):
        Sequential([Dense(16, input_shape=(8,)), GlobalAveragePooling2D()])


def compiled_mlp():
    model = Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_fit_without_targets_says_so():
    with pytest.raises(ValueError, match="needs the targets y as well; got y=None"):
        compiled_mlp().fit(np.zeros((4, 4)), None, verbose=0)


def test_validation_data_with_three_items():
    x, y = np.zeros((4, 4)), np.zeros(4, int)
    compiled_mlp().fit(x, y, validation_data=(x, y, None), verbose=0)   # Keras's form, no weights
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\)"):
        compiled_mlp().fit(x, y, validation_data=(x, y, np.ones(4)), verbose=0)


@pytest.mark.parametrize("split", ["abc", 1.5, -0.1])
def test_validation_split_must_be_a_fraction(split):
    with pytest.raises(ValueError, match=r"validation_split .* in \[0, 1\)"):
        compiled_mlp().fit(np.zeros((4, 4)), np.zeros(4, int), validation_split=split, verbose=0)


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 1, np.nan, 2]), "nan"),
    (np.array(["cat", "dog", "cat", "dog"]), "Map class names to integers"),
    (np.array([0, 1.5, 2, 1]), "1.5"),
])
def test_sparse_labels_that_are_not_class_numbers(labels, words):
    with pytest.raises(ValueError, match=words):
        compiled_mlp().fit(np.zeros((4, 4)), labels, verbose=0)
