"""minicnn.plot figures (axes counts, PNGs) and the LayerStatistics callback."""
import numpy as np
import pytest

from minicnn import Sequential, plot
from minicnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.stats import LayerStatistics, stat_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 4:].mean(axis=(1, 2, 3)) > 0.2)
    return x, y                                              # 3 classes


def tiny_model(seed=0, activation="relu", extras=()):
    model = Sequential([Conv2D(4, 3, activation=activation, input_shape=(8, 8, 1)), *extras,
                        MaxPooling2D(), Flatten(), Dense(3, activation="softmax")], seed=seed)
    model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained():
    x, y = tiny_data()
    model = tiny_model()
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.25,
                        callbacks=[LayerStatistics(x[:16], y[:16])])
    return model, history, x, y


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC


# -- LayerStatistics ----------------------------------------------------------
def test_statistics_recorded_for_every_layer(trained):
    model, history, _, _ = trained
    h = history.history
    for layer in model.layers:
        for stat in ("act_mean", "act_std"):
            assert len(h[f"stats/{layer.name}/{stat}"]) == 3
    assert set(stat_series(h, "grad_norm")) == {"conv2d", "dense"}      # layers with weights
    assert set(stat_series(h, "dead_relu")) == {"conv2d"}
    assert all(0 <= v <= 1 for v in h["stats/conv2d/dead_relu"])
    assert all(v > 0 for v in h["stats/dense/grad_norm"])


def test_saturation_of_tanh_and_sigmoid():
    x, y = tiny_data()
    for activation in ("tanh", "sigmoid"):
        model = tiny_model(activation=activation)
        history = model.fit(x * 100, y, epochs=1, verbose=0, callbacks=[LayerStatistics(x * 100, y)])
        # Inputs of size ~100 drive most units into the flat ends of the curve.
        assert history.history["stats/conv2d/saturated"][0] > 0.5


@pytest.mark.parametrize("verbose", [1, 2])
def test_statistics_stay_out_of_the_progress_line(verbose, capsys):
    # fit prints the epoch's line (bar.finish) before callbacks' on_epoch_end adds the stats.
    x, y = tiny_data()
    history = tiny_model().fit(x, y, epochs=2, verbose=verbose, callbacks=[LayerStatistics(x, y)])
    out = capsys.readouterr().out
    assert "loss" in out and "stats/" not in out
    assert "stats/conv2d/act_mean" in history.history


def test_statistics_do_not_change_training():
    # BatchNorm's moving statistics and Dropout's generator are what a probe pass would disturb.
    x, y = tiny_data()

    def run(callbacks):
        model = tiny_model(seed=3, extras=(BatchNormalization(), Dropout(0.3)))
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=callbacks)
        return history.history["loss"], model.get_weights()

    loss_plain, weights_plain = run([])
    loss_probe, weights_probe = run([LayerStatistics(x[:20], y[:20])])
    assert loss_plain == loss_probe
    for a, b in zip(weights_plain, weights_probe):
        np.testing.assert_array_equal(a, b)


# -- the plots -----------------------------------------------------------------
def test_plot_history_panels_and_png(trained, tmp_path):
    _, history, _, _ = trained
    fig = plot.plot_history(history, path=tmp_path / "h.png", title="tiny")
    assert len(fig.axes) == 2                                  # loss, accuracy (stats ignored)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].lines) == 2                         # train solid, val dashed
    assert fig.axes[0].lines[1].get_linestyle() == "--"
    assert_png(tmp_path / "h.png")
    assert len(plot.plot_history(history.history).axes) == 2   # a plain dict works too


def test_plot_history_several_runs(trained):
    _, history, _, _ = trained
    fig = plot.plot_history({"relu": history, "again": history.history})
    assert len(fig.axes) == 2
    assert len(fig.axes[1].lines) == 4                         # 2 runs × (train, val)


def test_plot_filters(trained, tmp_path):
    model, _, _, _ = trained
    fig = plot.plot_filters(model.layers[0], path=tmp_path / "f.png")
    assert len(fig.axes) == 4
    assert_png(tmp_path / "f.png")


def test_plot_feature_maps(trained, tmp_path):
    model, _, x, _ = trained
    fig = plot.plot_feature_maps(model, x[0], 0, path=tmp_path / "m.png")
    assert len(fig.axes) == 4 and fig.axes[0].images[0].get_array().shape == (6, 6)
    assert_png(tmp_path / "m.png")
    assert len(plot.plot_feature_maps(model, x[0, ..., 0], 1, max_maps=2).axes) == 2   # HW image
    assert len(plot.plot_feature_maps(model, x[0], -1).axes) == 1                      # Dense: bars


def test_plot_confusion_matrix_accepts_labels_onehot_and_probabilities(trained, tmp_path):
    model, _, x, y = trained
    probabilities = model.predict(x)
    onehot = np.eye(3)[y]
    for y_true, y_pred in ((y, probabilities.argmax(1)), (onehot, probabilities)):
        fig = plot.plot_confusion_matrix(y_true, y_pred, class_names=["a", "b", "c"],
                                         path=tmp_path / "c.png")
        assert len(fig.axes) == 1
        matrix = fig.axes[0].images[0].get_array()
        assert matrix.shape == (3, 3) and matrix.sum() == len(x)
        assert np.trace(matrix) == np.sum(probabilities.argmax(1) == y)
    assert_png(tmp_path / "c.png")


def test_plot_misclassified(tmp_path):
    x = np.random.default_rng(0).random((10, 5, 5, 1))
    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 2, 2, 1, 1, 2, 0, 0, 2, 0])            # wrong at 1, 3, 7
    fig = plot.plot_misclassified(x, y_true, y_pred, class_names=["cat", "dog", "owl"],
                                  path=tmp_path / "w.png")
    assert len(fig.axes) == 3
    assert fig.axes[0].get_title() == "dog → owl"
    assert_png(tmp_path / "w.png")
    assert len(plot.plot_misclassified(x, y_true, y_pred, n=2).axes) == 2
    assert len(plot.plot_misclassified(x, y_true, y_true).axes) == 1    # nothing wrong: a note


def test_plot_gradient_norms(trained, tmp_path):
    _, history, _, _ = trained
    fig = plot.plot_gradient_norms(history, path=tmp_path / "g.png")
    assert len(fig.axes) == 1
    assert sorted(line.get_label() for line in fig.axes[0].lines) == ["conv2d", "dense"]
    assert fig.axes[0].get_yscale() == "log"
    assert_png(tmp_path / "g.png")
    assert len(plot.plot_gradient_norms({"tanh": history, "relu": history}).axes) == 2
    with pytest.raises(ValueError, match="LayerStatistics"):
        plot.plot_gradient_norms({"loss": [1.0, 0.5]})


def test_figures_do_not_pile_up_headless(trained):
    import matplotlib
    import matplotlib.pyplot as plt
    if matplotlib.get_backend().lower() != "agg":
        pytest.skip("a display backend is in use")
    before = len(plt.get_fignums())
    plot.plot_history(trained[1])
    assert len(plt.get_fignums()) == before
