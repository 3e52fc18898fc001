"""How much of a trained net's test accuracy do BatchNormalization's moving statistics cost?

At inference BatchNormalization normalises with its moving statistics, averages that move
1% per training step (momentum 0.99, as in Keras). While the weights still change fast,
those averages describe the net of a few hundred steps ago, and test accuracy can swing
from one epoch to the next though training accuracy rises smoothly, as in the
AlexNet-like runs (RESULTS.md). This script takes the weights a run left in its backup
(the examples keep them: ``<out>/backup/<run>/backup.npz``), evaluates the test set as
``predict`` does, then again with every BatchNormalization layer's statistics computed
afresh, exactly, from ``--reference`` training images passed through the net as it is,
layer by layer.

    python examples/batchnorm_statistics_check.py examples/out/alexnet_cifar10/backup/alexnet-*/backup.npz
    python examples/batchnorm_statistics_check.py PATH --dataset fashion_mnist --model keras_convnet_bn

Nothing is trained and the backup is not changed. Prints both accuracies and writes them,
with the paths, to ``--out`` as JSON.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from minicnn import zoo
from minicnn.datasets import cifar10, fashion_mnist
from minicnn.layers import BatchNormalization
from minicnn.layers.normalization import batch_moments
from minicnn.saving import load_weights, read_model
from minicnn.utils import to_categorical

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402 - examples/_common.py

MODELS = {"alexnet_like": (zoo.alexnet_like, cifar10),
          "keras_convnet_bn": (lambda: zoo.keras_convnet(bn=True), fashion_mnist)}


def recompute_batchnorm_statistics(model, x_reference, batch_size=256):
    """Set every BatchNormalization layer's moving mean and variance to the exact
    statistics of its input over ``x_reference``, the layers before it already using
    theirs. Returns {layer name: largest change of the moving mean, in moving-std units}.

    Shapes: x_reference: (N, *model.input_shape).
    """
    changes = {}
    activations = x_reference
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            sums = [batch_moments(activations[i:i + batch_size]) for i in range(0, len(activations), batch_size)]
            weights = np.array([min(batch_size, len(activations) - i) for i in range(0, len(activations), batch_size)])
            mean = np.average([m for m, _ in sums], axis=0, weights=weights)
            # E[x^2] - E[x]^2 over the whole set, from each batch's mean and variance
            var = np.average([v + m.astype(np.float64) ** 2 for m, v in sums], axis=0, weights=weights) - mean ** 2
            old_mean, old_var = layer.state["moving_mean"], layer.state["moving_variance"]
            changes[layer.name] = float(np.max(np.abs(mean - old_mean) / np.sqrt(old_var + layer.epsilon)))
            old_mean[...], old_var[...] = mean, var
        activations = np.concatenate([layer.forward(activations[i:i + batch_size], training=False)
                                      for i in range(0, len(activations), batch_size)])
    return changes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backups", nargs="+", type=Path, help="backup.npz files of runs of --model")
    parser.add_argument("--model", choices=sorted(MODELS), default="alexnet_like")
    parser.add_argument("--reference", type=int, default=5000, help="training images for the statistics")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "batchnorm_check.json")
    args = parser.parse_args(argv)
    build, dataset = MODELS[args.model]
    (x_train, _), (x_test, y_test) = dataset.load_data()
    shape = (-1, 28, 28, 1) if dataset is fashion_mnist else (-1, *x_train.shape[1:])
    scale = lambda x: (x.reshape(shape) / np.float32(255)).astype("float32")   # noqa: E731 - as the examples do
    x_reference, x_test = scale(x_train[:args.reference]), scale(x_test[:args.test_limit])
    y_test = to_categorical(y_test[:args.test_limit], 10)
    report = {"model": args.model, "reference_images": len(x_reference), "test_images": len(x_test), "runs": []}
    for path in args.backups:
        model = build()
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        _, weights, _ = read_model(path)
        load_weights(model, path, {k: v for k, v in weights.items() if not k.startswith("__")})
        moving = model.evaluate(x_test, y_test, verbose=0)[1]
        changes = recompute_batchnorm_statistics(model, x_reference)
        recomputed = model.evaluate(x_test, y_test, verbose=0)[1]
        print(f"{path}: test accuracy {moving:.4f} with the moving statistics, {recomputed:.4f} with "
              f"statistics recomputed from {len(x_reference)} training images "
              f"(largest shift of a moving mean: {max(changes.values()):.2f} std)")
        report["runs"].append({"backup": str(path), "moving_statistics_accuracy": float(moving),
                               "recomputed_statistics_accuracy": float(recomputed), "mean_shift_std": changes})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
