"""Smoke tests for benchmarks/train_speed.py: it runs, on tiny random data, with or
without PyTorch. Nothing here is timed; the benchmark itself measures speed."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import train_speed  # noqa: E402


def tiny_job(name, tmp_path, monkeypatch, use_torch=False):
    """The benchmark's job for ``name``: 16 random samples in 2 batches of 8, 1 epoch."""
    monkeypatch.delenv("MINICNN_DATA", raising=False)          # random data, never a download
    monkeypatch.setitem(train_speed.MODELS[name], "batch_size", 8)
    args = train_speed.parse_args(["--models", name, "--limit", "16", "--epochs", "1",
                                   "--warmup-steps", "1", "--test-limit", "8", "--threads", "1"])
    args.use_torch = use_torch
    return train_speed.prepare_model(name, args, tmp_path)


@pytest.mark.parametrize("name", ["lenet", "fashion_cnn", "mlp"])
def test_minicnn_half_trains_two_batches(name, tmp_path, monkeypatch):
    job, info = tiny_job(name, tmp_path, monkeypatch)
    assert info["data"].startswith("random") and info["steps_per_epoch"] == 2
    result = train_speed.run_job({**job, "framework": "minicnn"})
    assert len(result["epoch_s"]) == 1 and len(result["train_loss"]) == 1
    assert np.isfinite(result["train_loss"][0])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["peak_rss_mb"] > 0 and result["warmup_s"] >= 0


def test_batch_source_follows_the_shared_orders():
    x, y = np.arange(10)[:, None], np.arange(10)
    orders = [np.array([3, 1, 4, 0, 2, 9, 8, 7, 6, 5]), np.arange(10)[::-1]]
    source = train_speed.BatchSource(x, y, 4, orders)
    assert len(source) == 3
    first = [yb.tolist() for _, yb in source]
    second = [yb.tolist() for _, yb in source]
    assert first == [[3, 1, 4, 0], [2, 9, 8, 7], [6, 5]]
    assert second == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]


def test_main_without_torch_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(train_speed, "torch_available", lambda: False)   # as if torch were absent
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    out = tmp_path / "speed.json"
    train_speed.main(["--models", "mlp", "--limit", "128", "--epochs", "1", "--warmup-steps", "1",
                      "--test-limit", "64", "--threads", "1", "--no-startup", "--out", str(out)])
    report = json.loads(out.read_text())
    result = report["models"]["mlp"]
    assert report["settings"]["torch"] is False and "torch" not in result
    assert "error" not in result["minicnn"], result["minicnn"]
    assert result["ratios"]["epoch_best"] is None
    assert "| mlp |" in out.with_suffix(".md").read_text()
    assert "error" not in result["numpy"], result["numpy"]        # the hand-written loop ran too
    assert result["ratios"]["minicnn_vs_numpy_loop"] > 0
    assert "hand-written NumPy loop" in out.with_suffix(".md").read_text()


def test_numpy_loop_takes_the_step_minicnn_takes():
    """The hand-written MLP (the benchmark's floor) does the work minicnn's fit does: from
    the same weights, one Adam step on one batch gives the same loss, accuracy and weights."""
    import _numpy_mlp
    model = train_speed.compile_minicnn(train_speed.build_minicnn("mlp", 0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 28, 28), dtype=np.float32), rng.integers(0, 10, 32)
    by_hand = _numpy_mlp.NumpyMlp(model.get_weights())
    loss, accuracy = by_hand.train_step(x, y)
    want_loss, want_accuracy = model.train_on_batch(x, y)
    assert loss == pytest.approx(want_loss, rel=1e-5) and accuracy == want_accuracy
    for got, want in zip(by_hand.params, model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lenet", "fashion_cnn", "mlp", "alexnet"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_twin_computes_the_same_function(name, channels_last):
    torch = pytest.importorskip("torch")
    import _torch_models
    model = train_speed.build_minicnn(name, seed=3)
    rng = np.random.default_rng(0)
    for layer in model.layers:     # non-trivial biases and BatchNorm statistics
        for store in (layer.params, layer.state):
            for key, value in store.items():
                if key != "kernel":
                    value[...] = rng.uniform(0.5, 1.5, value.shape) if "variance" in key or key == "gamma" \
                        else rng.normal(0, 0.1, value.shape)
    twin = _torch_models.build_twin(_torch_models.twin_spec(model), channels_last=channels_last)
    _torch_models.load_keras_weights(twin, model.get_weights())
    x = rng.random((3, *model.input_shape), dtype=np.float32)
    with torch.no_grad():
        probabilities = torch.softmax(twin.eval()(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(probabilities, model.predict(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet", "mlp"])
def test_torch_twin_has_the_same_gradients(name):
    torch = pytest.importorskip("torch")
    import _torch_models
    cfg = train_speed.MODELS[name]
    model = train_speed.compile_minicnn(train_speed.build_minicnn(name, seed=1), cfg["loss"])
    twin = _torch_models.build_twin(_torch_models.twin_spec(model))
    _torch_models.load_keras_weights(twin, model.get_weights())
    rng = np.random.default_rng(0)
    x = rng.random((8, *model.input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, 8)
    y = np.eye(10, dtype=np.float32)[labels] if cfg["loss"] == "categorical_crossentropy" else labels
    y_pred = model.forward(x, training=True)
    model.backward_from_loss(y, y_pred, need_input_grad=True)
    loss = torch.nn.functional.cross_entropy(twin.train()(torch.from_numpy(x)), torch.from_numpy(labels))
    loss.backward()
    np.testing.assert_allclose(loss.item(), model.loss.value(y, y_pred), rtol=1e-5)
    first = next(layer for layer in model.layers if "kernel" in layer.params)
    _, first_module = twin.keras_layers[0]
    grad = first_module.weight.grad.numpy()
    grad = grad.transpose(2, 3, 1, 0) if grad.ndim == 4 else grad.T
    np.testing.assert_allclose(grad, first.grads["kernel"], rtol=1e-3, atol=1e-6)


@pytest.mark.skipif(train_speed.gpu_info() is not None, reason="this machine has a GPU")
def test_device_gpu_without_one_says_so(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="needs CuPy and a CUDA device"):
        train_speed.main(["--device", "gpu", "--models", "mlp", "--no-startup",
                          "--out", str(tmp_path / "speed.json")])
    assert not (tmp_path / "speed.json").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("framework", ["minicnn", "torch"])
def test_gpu_run_trains_on_the_gpu(framework, tmp_path, monkeypatch):
    if framework == "torch":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("this PyTorch has no CUDA")
    job, _ = tiny_job("lenet", tmp_path, monkeypatch, use_torch=framework == "torch")
    result = train_speed.run_job({**job, "device": "gpu", "framework": framework})
    losses = result["train_loss" if framework == "minicnn" else "last_batch_loss"]
    assert len(result["epoch_s"]) == 1 and np.isfinite(losses[0])
