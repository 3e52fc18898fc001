"""Convnets on Fashion-MNIST: Keras's MNIST convnet, its variants, and the notebook's model 2.

Reproduces the notebook's figures (test accuracy):

  Keras's convnet (32@3x3 relu, maxpool, 64@3x3 relu, maxpool, Flatten, Dropout .5,
  Dense 10; adam, batch 128, validation_split .1):
      15 epochs 90.18%, 60 epochs 92.23%, + BatchNormalization 92.37%,
      + BatchNormalization + Dropout(.1) for 120 epochs 92.53%;
      other optimisers: Adamax 91.45%, RMSprop 91.60%, Adadelta / Adagrad / SGD below 83%.
  Model 2 (32@3x3 same, maxpool, dropout .3, 64@3x3 same, maxpool, dropout .5, 128@3x3,
  Flatten, Dense 128, dropout .3, Dense 10; leaky relu alpha 0.1; the test set as
  validation data):
      batch 70 for 50 epochs 92.40%, 120 epochs 92.60%, batch 128 92.93%,
      + BatchNormalization after each conv 93.38%.

The notebook does not say where the extra BatchNormalization / Dropout(.1) layers go
(here: after each conv, and after each pooling layer), nor how long the +BN and
optimiser runs trained (here: 60 and 15 epochs, like the runs they are compared with).

    python examples/fashion_convnets.py --runs keras15     # one run: minutes (15 epochs) to an hour (model 2, 120)
    python examples/fashion_convnets.py --quick

Writes metrics.json, comparison.png (all runs), optimizers.png and misclassified.png.
"""
# %% 0. Imports and flags
from minicnn import plot, zoo
from minicnn.datasets import fashion_mnist
from minicnn.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, RMSprop
from minicnn.utils import to_categorical

from _common import Results, parse_args, show, take   # examples/_common.py

# run key: (title, model, model options, optimiser, batch size, epochs, notebook accuracy)
RUNS = {
    "keras15": ("convnet, 15 epochs", "keras", {}, Adam, 128, 15, 0.9018),
    "keras60": ("convnet, 60 epochs", "keras", {}, Adam, 128, 60, 0.9223),
    "keras_bn": ("convnet + BN, 60 epochs", "keras", {"bn": True}, Adam, 128, 60, 0.9237),
    "keras_bn_dropout": ("convnet + BN + Dropout .1, 120 epochs", "keras", {"bn": True, "dropout": 0.1},
                         Adam, 128, 120, 0.9253),
    "adamax": ("convnet, Adamax", "keras", {}, Adamax, 128, 15, 0.9145),
    "rmsprop": ("convnet, RMSprop", "keras", {}, RMSprop, 128, 15, 0.9160),
    "adadelta": ("convnet, Adadelta", "keras", {}, Adadelta, 128, 15, None),
    "adagrad": ("convnet, Adagrad", "keras", {}, Adagrad, 128, 15, None),
    "sgd": ("convnet, SGD", "keras", {}, SGD, 128, 15, None),
    "model2_b70_50": ("model 2, batch 70, 50 epochs", "model2", {}, Adam, 70, 50, 0.9240),
    "model2_b70_120": ("model 2, batch 70, 120 epochs", "model2", {}, Adam, 70, 120, 0.9260),
    "model2_b128": ("model 2, batch 128, 120 epochs", "model2", {}, Adam, 128, 120, 0.9293),
    "model2_bn": ("model 2 + BN, batch 128, 120 epochs", "model2", {"bn": True}, Adam, 128, 120, 0.9338),
}
OPTIMIZER_RUNS = ["keras15", "adamax", "rmsprop", "adadelta", "adagrad", "sgd"]

args = parse_args("fashion_convnets", __doc__, epochs=None, batch_size=None, extra=lambda parser: parser.add_argument(
    "--runs", help=f"comma-separated runs to do (default: all): {', '.join(RUNS)}"))
# --quick does one run of each architecture, enough to show the script works
args.runs = args.runs or ("keras15,model2_bn" if args.quick else ",".join(RUNS))
results = Results("fashion_convnets", "Fashion-MNIST convnets (Keras's convnet and model 2)", args)

# %% 1. Data
(x_train, y_train), (x_test, y_test) = take(args, *fashion_mnist.load_data())
x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)


# %% 2. The models: Keras's MNIST convnet (with optional BN and Dropout(.1)) and "model 2"
# (same padding, leaky relu, more dropout), defined in minicnn/zoo.py as keras_convnet and
# fashion_model2, the one definition the examples, tests and benchmarks share.
BUILDERS = {"keras": zoo.keras_convnet, "model2": zoo.fashion_model2}


# %% 3. Train every chosen run
# BatchNormalization predicts with moving statistics that move 1% a step (momentum 0.99):
# after the few dozen steps of a --quick run they are still mostly their start values, so
# test accuracy can sit near chance while training accuracy climbs. Keras does the same.
BN_QUICK_NOTE = ("BatchNormalization's moving statistics (momentum 0.99) have seen too few steps "
                 "in a quick run: test accuracy near chance is expected here, as in Keras")
for key in args.runs.split(","):
    title, architecture, options, optimizer, batch_size, epochs, notebook = RUNS[key]
    model = BUILDERS[architecture](**options, seed=args.seed)
    model.compile(optimizer=optimizer(), loss="categorical_crossentropy", metrics=["accuracy"])
    validation = {"validation_split": 0.1} if architecture == "keras" else {"validation_data": (x_test, y_test)}
    note = BN_QUICK_NOTE if args.quick and options.get("bn") else None
    results.fit(title, model, x_train, y_train, test=(x_test, y_test), notebook_accuracy=notebook, key=key,
                note=note, epochs=args.epochs or epochs, batch_size=args.batch_size or batch_size, **validation)

# %% 4. Comparison charts and the last model's mistakes
plot.plot_history(results.histories(), path=args.out / "comparison.png", title="Fashion-MNIST convnets")
optimizer_runs = results.histories(OPTIMIZER_RUNS)
if len(optimizer_runs) > 1:
    plot.plot_history(optimizer_runs, path=args.out / "optimizers.png", title="Optimisers, Keras's convnet")
plot.plot_misclassified(x_test, y_test, model.predict(x_test), class_names=fashion_mnist.CLASS_NAMES,
                        path=args.out / "misclassified.png")
show()
