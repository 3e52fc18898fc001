"""model.trace: shapes, im2col sizes and FLOPs of LeNet-5, and that tracing changes nothing."""
import numpy as np
import pytest

import kernels
from minicnn import Sequential, zoo
from minicnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                            MaxPooling2D, ZeroPadding2D)
from minicnn.trace import trace_model


@pytest.fixture(scope="module")
def lenet_trace():
    printed = []
    model = zoo.lenet5(seed=0)
    trace = model.trace(np.random.default_rng(0).random((2, 28, 28, 1)), print_fn=printed.append)
    return model, trace, printed


def test_lenet5_shapes(lenet_trace):
    _, rows, _ = lenet_trace
    assert [r["output_shape"] for r in rows] == [
        (2, 24, 24, 6), (2, 12, 12, 6), (2, 8, 8, 16), (2, 4, 4, 16),
        (2, 4, 4, 120), (2, 1920), (2, 84), (2, 10)]
    assert rows[0]["input_shape"] == (2, 28, 28, 1)
    for before, after in zip(rows, rows[1:]):
        assert after["input_shape"] == before["output_shape"]


def test_lenet5_flops_and_im2col(lenet_trace):
    _, rows, _ = lenet_trace
    # 2 FLOPs per multiply-add: conv 2·N·OH·OW·kh·kw·Cin·Cout, dense 2·N·D·units; the rest 0.
    # conv3 is 5x5 "same" on 4x4 images: window rows inside the image per output row
    # 3, 4, 4, 3 (the rest is padding, not counted), so 14 x 14 cells instead of 16 x 25.
    expected_flops = [2 * 2 * 24 * 24 * 5 * 5 * 1 * 6,      # 345,600
                      0,
                      2 * 2 * 8 * 8 * 5 * 5 * 6 * 16,       # 614,400
                      0,
                      2 * 2 * 14 * 14 * 16 * 120,           # 1,505,280
                      0,
                      2 * 2 * 1920 * 84,                    # 645,120
                      2 * 2 * 84 * 10]                      # 3,360
    assert [r["flops"] for r in rows] == expected_flops
    assert sum(expected_flops) == 3_113_760
    # im2col: one row per output pixel of the batch, one column per weight of a filter.
    assert [r["im2col_shape"] for r in rows] == [
        (1152, 25), None, (128, 150), None, (32, 400), None, None, None]
    assert rows[2]["im2col_mb"] == pytest.approx(128 * 150 * 4 / 1e6)   # float32


def test_trace_times_memory_and_table(lenet_trace):
    model, rows, printed = lenet_trace
    # Every layer did some work, and a clock that measured it reads more than zero.
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in rows)
    total_line = next(line for line in printed[0].splitlines() if line.startswith("Total"))
    assert f"{sum(r['forward_ms'] for r in rows):.3f}" in total_line.split()
    # The first conv keeps its float32 output (2·24·24·6 values); Flatten is a view: free.
    assert rows[0]["memory_bytes"] >= 2 * 24 * 24 * 6 * 4
    assert rows[5]["memory_bytes"] == 0
    text = printed[0]
    for layer in model.layers:
        assert layer.name in text
    assert "im2col" in text and "(1152, 25)" in text and "Total" in text


def test_trace_leaves_the_model_untouched():
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(6, 6, 2)), BatchNormalization(),
                        MaxPooling2D(), Flatten(), Dropout(0.5), Dense(3, activation="softmax")], seed=1)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    weights, rng_state = model.get_weights(), model.rng.bit_generator.state
    rows = trace_model(model, np.ones((3, 6, 6, 2)), print_fn=None, repeat=1)
    assert len(rows) == len(model.layers)
    for before, after in zip(weights, model.get_weights()):   # includes BatchNorm's moving stats
        np.testing.assert_array_equal(before, after)
    assert model.rng.bit_generator.state == rng_state          # dropout drew no masks for real


def test_trace_runs_backward_as_training_does(monkeypatch):
    """No backward below the first layer with weights, and no input gradient there."""
    model = Sequential([ZeroPadding2D(1, input_shape=(5, 5, 1)), Conv2D(2, 3), Flatten(), Dense(3)], seed=0)
    asked = []
    conv_backward = kernels.conv2d_backward
    monkeypatch.setattr(kernels, "conv2d_backward",
                        lambda dy, cache, need_dx=True: asked.append(need_dx) or conv_backward(dy, cache, need_dx))
    rows = trace_model(model, np.ones((2, 5, 5, 1)), print_fn=None, repeat=1)
    assert rows[0]["backward_ms"] == 0.0 and rows[1]["backward_ms"] > 0
    assert asked and not any(asked)
    assert all(layer.needs_input_grad for layer in model.layers)     # put back afterwards


def test_trace_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="expects inputs of shape"):
        zoo.lenet5().trace(np.zeros((2, 28, 28)), print_fn=None)


def test_trace_is_a_table_whose_rows_are_data(lenet_trace):
    _, trace, printed = lenet_trace
    assert repr(trace) == str(trace) == printed[0]          # a notebook echoes the table
    assert trace.rows[0] is trace[0] and len(trace) == 8 and list(trace) == trace.rows


def test_trace_with_labels_starts_backward_from_the_loss():
    model = zoo.lenet5(seed=0)
    x, y = np.random.default_rng(0).random((2, 28, 28, 1)), np.array([3, 7])
    with pytest.raises(RuntimeError, match="compile"):
        model.trace(x, y)
    model.compile("adam", "sparse_categorical_crossentropy")
    trace = model.trace(x, y)
    assert [r["output_shape"] for r in trace][-1] == (2, 10) and trace[0]["backward_ms"] > 0


def test_trace_runs_on_the_thread_count_fit_uses(monkeypatch):
    numba = pytest.importorskip("numba")
    from minicnn import threads
    model = Sequential([Flatten(input_shape=(3, 3, 1)), Dense(2)], seed=0)
    seen = []
    forward = model.layers[1].forward
    monkeypatch.setattr(model.layers[1], "forward",
                        lambda x, training=False: seen.append(numba.get_num_threads()) or forward(x, training))
    threads.set_num_threads(1)
    try:
        trace_model(model, np.ones((2, 3, 3, 1)), repeat=1)
    finally:
        threads.set_num_threads(None)
    assert seen and set(seen) == {1}
