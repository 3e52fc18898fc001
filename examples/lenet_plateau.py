"""Why does LeNet plateau near 90%? The course's LeNet class and its variants.

Reproduces the notebook's study: the class LeNet (tanh, average pooling, SGD, 5 epochs)
and, one change at a time and each kept for the next run, relu; 32/64 filters; 3x3
kernels; Dense 512/256; a third conv layer of 128; adam; 15 epochs. The notebook gives
no figures for this study, so the table records ours only. It does not name the data
set either; a plateau "near 90%" is where LeNet sits on Fashion-MNIST (on MNIST it
passes 98%), so Fashion-MNIST is the default and --dataset mnist is there too.

    python examples/lenet_plateau.py           # every variant, notebook epochs (5, and 15 for the last)
    python examples/lenet_plateau.py --quick

Writes metrics.json, comparison.png (all runs on one chart), gradient_norms.png
(tanh vs relu, per layer) and misclassified.png (the last model) to --out.
"""
# %% 0. Imports and flags
from minicnn import LayerStatistics, Sequential, plot
from minicnn.datasets import fashion_mnist, mnist
from minicnn.layers import AveragePooling2D, Conv2D, Dense, Flatten
from minicnn.optimizers import SGD, Adam
from minicnn.utils import to_categorical

from _common import Results, parse_args, show, take   # examples/_common.py

args = parse_args("lenet_plateau", __doc__, epochs=None, batch_size=128, quick_train=1000, extra=lambda parser: parser.add_argument(
    "--dataset", choices=["fashion_mnist", "mnist"], default="fashion_mnist"))
results = Results("lenet_plateau", f"LeNet plateau study on {args.dataset}", args)

# %% 1. Data
dataset = {"fashion_mnist": fashion_mnist, "mnist": mnist}[args.dataset]
(x_train, y_train), (x_test, y_test) = take(args, *dataset.load_data())
x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)


# %% 2. The LeNet class, with the knobs the study turns
def LeNet(activation="tanh", filters=(6, 16), kernel_size=(5, 5), dense=(120, 84), third_conv=None):
    layers = [
        Conv2D(filters[0], kernel_size, activation=activation, padding="same", input_shape=(28, 28, 1)),
        AveragePooling2D((2, 2)),
        Conv2D(filters[1], kernel_size, activation=activation),
        AveragePooling2D((2, 2)),
    ]
    if third_conv:
        layers.append(Conv2D(third_conv, (3, 3), activation=activation, padding="same"))
    layers += [Flatten(),
               Dense(dense[0], activation=activation),
               Dense(dense[1], activation=activation),
               Dense(10, activation="softmax")]
    return Sequential(layers, seed=args.seed)


# %% 3. One run per change; each change is kept for the next
variants = [
    ("LeNet tanh SGD", {}),
    ("+ relu", {"activation": "relu"}),
    ("+ 32/64 filters", {"filters": (32, 64)}),
    ("+ 3x3 kernels", {"kernel_size": (3, 3)}),
    ("+ Dense 512/256", {"dense": (512, 256)}),
    ("+ conv 128", {"third_conv": 128}),
    ("+ adam", {"optimizer": "adam"}),
    ("+ 15 epochs", {"epochs": 15}),
]
settings = {"optimizer": "sgd", "epochs": 5}
probe = (x_train[:256], y_train[:256])       # a fixed batch for the per-layer gradient norms
for name, change in variants:
    settings.update(change)
    knobs = {k: v for k, v in settings.items() if k not in ("optimizer", "epochs")}
    model = LeNet(**knobs)
    optimizer = SGD(learning_rate=0.1) if settings["optimizer"] == "sgd" else Adam()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    results.fit(name, model, x_train, y_train, test=(x_test, y_test), validation_split=0.1,
                epochs=args.epochs or settings["epochs"],
                callbacks=[LayerStatistics(*probe)])

# %% 4. Comparison chart and table
plot.plot_history(results.histories(), path=args.out / "comparison.png", title="LeNet variants")
plot.plot_gradient_norms(results.histories(["LeNet tanh SGD", "+ relu"]), path=args.out / "gradient_norms.png")
plot.plot_misclassified(x_test, y_test, model.predict(x_test), class_names=getattr(dataset, "CLASS_NAMES", None),
                        path=args.out / "misclassified.png")
print(f"\n{'run':<18} {'epochs':>6} {'test acc':>9} {'s/epoch':>8}")
for name, run in results.data["runs"].items():
    print(f"{name:<18} {run['epochs']:>6} {run['test_accuracy']:>9.4f} "
          f"{sum(run['seconds_per_epoch']) / run['epochs']:>8.1f}")
show()
