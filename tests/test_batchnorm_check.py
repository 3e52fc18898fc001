"""examples/batchnorm_statistics_check.py: BatchNormalization statistics recomputed exactly."""
import sys
from pathlib import Path

import numpy as np

from minicnn import Sequential
from minicnn.backup import BackupAndRestore
from minicnn.layers import BatchNormalization, Conv2D, Dense, Flatten

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
try:
    import batchnorm_statistics_check as check
finally:
    sys.path.remove(str(EXAMPLES))


def test_recomputed_statistics_are_the_moments_of_each_batchnorm_input(rng):
    model = Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(6, 6, 2)), BatchNormalization(),
                        Flatten(), Dense(5), BatchNormalization(), Dense(3)], seed=0, dtype="float64")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = rng.standard_normal((37, 6, 6, 2)) * 3 + 1           # 37: the last batch of 16 is short
    check.recompute_batchnorm_statistics(model, x, batch_size=16)
    activations = x
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            axes = tuple(range(activations.ndim - 1))
            np.testing.assert_allclose(layer.state["moving_mean"], activations.mean(axis=axes), rtol=1e-10)
            np.testing.assert_allclose(layer.state["moving_variance"], activations.var(axis=axes), rtol=1e-8)
        activations = layer.forward(activations, training=False)


def test_the_check_reads_a_runs_backup_and_reports_both_accuracies(data_dir, tmp_path):
    from minicnn import zoo
    from minicnn.datasets import fashion_mnist
    (x, y), _ = fashion_mnist.load_data(data_dir)
    x = (x[:256].reshape(-1, 28, 28, 1) / np.float32(255)).astype("float32")
    model = zoo.keras_convnet(bn=True, seed=0)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, np.eye(10)[y[:256]], batch_size=64, epochs=1, verbose=0,
              callbacks=[BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)])
    backup = next((tmp_path / "backup").rglob("backup.npz"))
    out = tmp_path / "check.json"
    check.main([str(backup), "--model", "keras_convnet_bn", "--reference", "200", "--test-limit", "300",
                "--out", str(out)])
    import json
    (run,) = json.loads(out.read_text())["runs"]
    assert 0 <= run["moving_statistics_accuracy"] <= 1 and 0 <= run["recomputed_statistics_accuracy"] <= 1
    assert set(run["mean_shift_std"]) == {"batch_normalization", "batch_normalization_1"}
