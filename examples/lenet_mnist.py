"""LeNet-5 on MNIST, as the course notebook wrote it.

Reproduces the notebook's LeNet run: tanh convolutions with average pooling, adam,
batch 64, 10 epochs, the test set as validation data -> 98.36% test accuracy
(95.80% after the first epoch; Keras took 10-13 s per epoch).

    python examples/lenet_mnist.py             # the notebook's full run
    python examples/lenet_mnist.py --quick     # a few seconds on 2000 images

Writes metrics.json, curves.png, misclassified.png, confusion.png, filters.png and
feature_maps.png to --out (default examples/out/lenet_mnist/).
"""
# %% 0. Imports and flags
from minicnn import plot, zoo
from minicnn.datasets import mnist
from minicnn.utils import to_categorical

from _common import Results, parse_args, show, take   # examples/_common.py

args = parse_args("lenet_mnist", __doc__, epochs=10, batch_size=64)
results = Results("lenet_mnist", "LeNet-5 on MNIST (98.36% after 10 epochs)", args)

# %% 1. Data: 28x28 grey images scaled to [0, 1], one channel axis
(x_train, y_train), (x_test, y_test) = take(args, *mnist.load_data())
x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)
print("x_train", x_train.shape, "x_test", x_test.shape)

# %% 2. Model
# LeNet-5 as the notebook built it: read its layers in minicnn/zoo.py (lenet5), the one
# definition the examples, tests and benchmarks share. summary() lists them here too.
model = zoo.lenet5(seed=args.seed)
model.summary()

# %% 3. Train and evaluate: Results.fit is model.fit with a backup (a rerun resumes) and an
# epoch timer, then model.evaluate on the test set, recorded in metrics.json
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = results.fit("lenet", model, x_train, y_train, test=(x_test, y_test), notebook_accuracy=0.9836,
                      validation_data=(x_test, y_test), verbose=1)

# %% 4. Curves, mistakes, and what the first layer learned
y_pred = model.predict(x_test)
plot.plot_history(history, path=args.out / "curves.png", title="LeNet-5 on MNIST")
plot.plot_misclassified(x_test, y_test, y_pred, path=args.out / "misclassified.png")
plot.plot_confusion_matrix(y_test, y_pred, path=args.out / "confusion.png")
plot.plot_filters(model.layers[0], path=args.out / "filters.png")
plot.plot_feature_maps(model, x_test[0], layer_index=0, path=args.out / "feature_maps.png")
show()
