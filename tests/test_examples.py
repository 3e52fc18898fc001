"""Every example's --quick run: it finishes, its loss falls, and metrics.json has the documented keys.

Each example runs as a subprocess, as a learner would run it, from a folder other than
the repository root. They need the real data sets (MINICNN_DATA), so they skip
without them. One thread each keeps them quick on a shared 2-core machine, where
oversubscribed BLAS/Numba threads slow a small model down several times.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN_KEYS = {"key", "status", "history", "epochs", "epochs_asked", "test_loss", "test_accuracy",
            "seconds_per_epoch", "notebook_accuracy", "stopped_early", "stop_reason", "started", "ended",
            "sessions", "threads_used", "seed"}
TOP_KEYS = {"example", "notebook", "command", "config", "versions", "threads", "git", "cpu", "started", "runs"}
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                    "NUMBA_NUM_THREADS")}


def run_quick(name, data_dir, tmp_path, *flags):
    """Run examples/<name>.py --quick from tmp_path; returns its metrics.json and output folder."""
    out = tmp_path / "out"
    env = {**os.environ, **ONE_THREAD, "MINICNN_DATA": str(data_dir), "MINICNN_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out), *flags],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), out


def check_metrics(metrics, name, out, pngs):
    assert TOP_KEYS <= metrics.keys()
    assert metrics["example"] == name
    assert {"python", "numpy", "numba", "minicnn"} <= metrics["versions"].keys()
    assert metrics["config"]["quick"] is True
    assert metrics["runs"], "no run was recorded"
    for run, figures in metrics["runs"].items():
        assert RUN_KEYS <= figures.keys(), run
        assert {"loss", "accuracy"} <= figures["history"].keys(), run
        assert len(figures["seconds_per_epoch"]) == figures["epochs"] == len(figures["history"]["loss"]), run
        assert 0 <= figures["test_accuracy"] <= 1, run
        assert figures["status"] == "done", run
        assert figures["stopped_early"] == (figures["epochs"] < figures["epochs_asked"]), run
        assert figures["threads_used"]["numba"] == 1, run        # ONE_THREAD, measured inside fit
    assert {"revision", "dirty"} <= metrics["git"].keys()
    first = next(iter(metrics["runs"].values()))
    assert first["epochs"] >= 2
    assert first["history"]["loss"][-1] < first["history"]["loss"][0], "the loss did not fall"
    for png in pngs:
        assert (out / png).stat().st_size > 0, png


def test_lenet_mnist_quick(data_dir, tmp_path):
    metrics, out = run_quick("lenet_mnist", data_dir, tmp_path)
    check_metrics(metrics, "lenet_mnist", out, ["curves.png", "misclassified.png", "confusion.png",
                                                "filters.png", "feature_maps.png"])
    lenet = metrics["runs"]["lenet"]
    assert {"val_loss", "val_accuracy"} <= lenet["history"].keys()
    assert lenet["test_accuracy"] > 0.5          # far above chance, even on 2000 images


def test_rerun_restores_the_finished_run_and_fresh_trains_again(data_dir, tmp_path):
    first, out = run_quick("lenet_mnist", data_dir, tmp_path)
    assert (out / "backup" / ".gitignore").read_text().strip().endswith("*")
    again, _ = run_quick("lenet_mnist", data_dir, tmp_path)
    run, rerun = first["runs"]["lenet"], again["runs"]["lenet"]
    assert rerun["history"] == run["history"] and rerun["test_accuracy"] == run["test_accuracy"]
    assert rerun["seconds_per_epoch"] == run["seconds_per_epoch"]       # the restored epochs' timings
    assert [s["resumed_at"] for s in rerun["sessions"]] == [None, {"epoch": 2, "step": 0}]
    assert all(s["command"].startswith("python examples/lenet_mnist.py") and "revision" in s["git"]
               for s in rerun["sessions"])
    fresh, _ = run_quick("lenet_mnist", data_dir, tmp_path, "--fresh")
    assert [s["resumed_at"] for s in fresh["runs"]["lenet"]["sessions"]] == [None]
    assert fresh["runs"]["lenet"]["history"] == run["history"]           # same seed, same run


def test_a_name_never_claims_more_epochs_than_ran():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from _common import named_for
    finally:
        sys.path.remove(str(EXAMPLES))
    assert named_for("convnet, 15 epochs", 15) == "convnet, 15 epochs"
    assert named_for("convnet, 15 epochs", 2) == "convnet, 2 of 15 epochs"
    assert named_for("model 2, batch 70, 120 epochs", 130) == "model 2, batch 70, 130 epochs (notebook: 120)"
    assert named_for("3x128 relu", 4) == "3x128 relu"


def test_fashion_mlp_study_quick(data_dir, tmp_path):
    metrics, out = run_quick("fashion_mlp_study", data_dir, tmp_path)
    check_metrics(metrics, "fashion_mlp_study", out, ["units.png", "overfitting.png", "activations.png",
                                                      "initializers.png", "optimizers.png", "final.png",
                                                      "misclassified.png"])
    errors = metrics["errors"]
    assert "Flatten" in errors["without Flatten"]
    assert "10" in errors["Dense(5) for 10 classes"]
    assert set(errors) == {"without Flatten", "Dense(5) for 10 classes"}    # a lambda activation works
    assert metrics["runs"]["init zeros"]["test_accuracy"] < 0.3     # no symmetry breaking, no learning


@pytest.mark.slow
@pytest.mark.parametrize("name, pngs", [
    ("lenet_plateau", ["comparison.png", "gradient_norms.png", "misclassified.png"]),
    ("fashion_convnets", ["comparison.png", "misclassified.png"]),
    ("alexnet_cifar10", ["curves.png", "misclassified.png"]),
    ("mlp_cifar", ["comparison.png", "misclassified.png"]),
])
def test_slow_example_quick(name, pngs, data_dir, tmp_path):
    if "cifar" in name and not (data_dir / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no cifar-10-batches-py/ in {data_dir}: see tests/README.md")
    metrics, out = run_quick(name, data_dir, tmp_path)
    check_metrics(metrics, name, out, pngs)
