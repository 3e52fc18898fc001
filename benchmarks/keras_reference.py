"""The notebooks' Fashion-MNIST cells run in Keras 3 itself, for RESULTS.md's side-by-side notes.

    KERAS_BACKEND=torch python benchmarks/keras_reference.py --runs adamax,rmsprop --epochs 15
    KERAS_BACKEND=torch python benchmarks/keras_reference.py --runs mlp_adagrad --epochs 10

Where minicnn's figure differs from the notebook's, this answers "does Keras, on this
machine and these files, do any better?" The convnet runs build Keras's MNIST convnet
exactly as ``minicnn.zoo.keras_convnet`` does (two 3x3 relu convs of 32 and 64 with 2x2 max
pooling, Flatten, Dropout .5, Dense 10 softmax) and train with batch 128 and
``validation_split=0.1``; the ``mlp_`` runs build the MLP study's first model (Flatten,
Dense 128 sigmoid, Dense 10 softmax, as ``examples/fashion_mlp_study.py``) and train on all
60,000 images with batch 64. Each compiles with a Keras optimiser at its defaults, as the
notebook does, and evaluates on the test set after every epoch. Accuracy only: nothing
here is timed.

Runs in a separate environment with ``keras`` and a backend (``tensorflow-cpu``, or
``torch``, the default here: ``KERAS_BACKEND=torch``); minicnn's install never needs either. The data
come through minicnn's own loader (MINICNN_DATA), so both read the same files.

Writes ``results/keras_reference/<run>_seed<k>.json``: the settings, Keras's version and
backend, and per epoch the training, validation and test accuracy.
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: run name: (model, Keras optimiser at its defaults)
RUNS = {"keras15": ("convnet", "Adam"), "adamax": ("convnet", "Adamax"), "rmsprop": ("convnet", "RMSprop"),
        "mlp_adam": ("mlp", "Adam"), "mlp_adagrad": ("mlp", "Adagrad")}


def convnet(keras):
    """Keras's MNIST convnet, as the notebook defines it."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax"),
    ])


def mlp(keras):
    """The MLP study's first model: Flatten, Dense 128 sigmoid, Dense 10 softmax."""
    layers = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(),
                             layers.Dense(128, activation="sigmoid"), layers.Dense(10, activation="softmax")])


#: model: (builder, batch size, fit's validation: the convnet cells hold out the last 10%,
#: the MLP study's optimiser cells train on everything and validate on the test set)
MODELS = {"convnet": (convnet, 128, "split"), "mlp": (mlp, 64, "test")}


def fashion_mnist_arrays():
    """(x_train, y_train), (x_test, y_test): float32 (N, 28, 28, 1) in [0, 1], one-hot labels."""
    import numpy as np
    from minicnn.datasets import fashion_mnist
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    images = lambda x: (x.reshape(-1, 28, 28, 1) / np.float32(255)).astype("float32")  # noqa: E731
    one_hot = lambda y: np.eye(10, dtype="float32")[y]                                 # noqa: E731
    return (images(x_train), one_hot(y_train)), (images(x_test), one_hot(y_test))


def run(keras, key, epochs, seed, data, out_dir):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model_name, optimizer = RUNS[key]
    build, batch_size, validation = MODELS[model_name]
    model = build(keras)
    model.compile(optimizer=getattr(keras.optimizers, optimizer)(),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    test_accuracy = []

    class TestEveryEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy = self.model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1]
            test_accuracy.append(float(accuracy))
            print(f"{key} epoch {epoch + 1}: test accuracy {accuracy:.4f}", flush=True)

    held_out = {"validation_split": 0.1} if validation == "split" else {"validation_data": (x_test, y_test)}
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, callbacks=[TestEveryEpoch()],
                        verbose=2, **held_out)
    record = {"run": key, "model": model_name, "optimizer": optimizer, "epochs": epochs, "seed": seed,
              "batch_size": batch_size, "validation": list(held_out),
              "keras": keras.__version__, "backend": keras.backend.backend(), "command": " ".join(sys.argv),
              "accuracy": [float(a) for a in history.history["accuracy"]],
              "val_accuracy": [float(a) for a in history.history["val_accuracy"]],
              "test_accuracy": test_accuracy}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{key}_seed{seed}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)          # never a half-written result
    print(f"{key}: test accuracy {test_accuracy[-1]:.4f} after {epochs} epochs -> {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="adamax,rmsprop", help="comma-separated, from: " + ", ".join(RUNS))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="the backend's CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "keras_reference")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.runs.split(",")) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if os.environ["KERAS_BACKEND"] == "torch":
        import torch
        torch.set_num_threads(args.threads)
    import keras
    data = fashion_mnist_arrays()
    for key in args.runs.split(","):
        run(keras, key, args.epochs, args.seed, data, args.out)


if __name__ == "__main__":
    main()
