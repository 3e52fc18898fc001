"""An AlexNet-like network on CIFAR-10, as the course notebook wrote it.

Reproduces the notebook's run: 96@11x11 stride 4 + BN + maxpool 3/2, 256@5x5 + BN +
maxpool 3/2, 384, 384, 256 @3x3 (each + BN), maxpool, Flatten, two Dense(4096) with
Dropout .5, Dense 10; every conv relu and "same"; adam, batch 64, 10 epochs -> 65.73%
test accuracy. Keras took about 300 s per epoch (380 ms/step) in the notebook; the
network has 21.6 million parameters, 16.8 million of them in the second Dense(4096).

    python examples/alexnet_cifar10.py                    # the notebook's run (hours on 2 cores)
    python examples/alexnet_cifar10.py --limit 10000 --epochs 2
    python examples/alexnet_cifar10.py --quick

Our CIFAR-10 may be the JPEG re-encoding (see the datasets docs); expect about a point
of difference from the official pixels. Writes metrics.json, curves.png and
misclassified.png to --out.
"""
# %% 0. Imports and flags
from minicnn import plot, zoo
from minicnn.datasets import cifar10
from minicnn.utils import to_categorical

from _common import Results, parse_args, show, take   # examples/_common.py

args = parse_args("alexnet_cifar10", __doc__, epochs=10, batch_size=64, quick_train=640)
results = Results("alexnet_cifar10", "AlexNet-like on CIFAR-10 (65.73% after 10 epochs)", args)

# %% 1. Data: 32x32 RGB images scaled to [0, 1], one-hot labels
(x_train, y_train), (x_test, y_test) = take(args, *cifar10.load_data())
x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)
print("x_train", x_train.shape, "x_test", x_test.shape)

# %% 2. Model
# The AlexNet-like net (five convs with BatchNormalization, two 4096-unit dense layers):
# its layers are in minicnn/zoo.py (alexnet_like); summary() lists them here too.
model = zoo.alexnet_like(seed=args.seed)
model.summary()

# %% 3. Train and evaluate: Results.fit is model.fit with an epoch timer, then model.evaluate
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = results.fit("alexnet", model, x_train, y_train, test=(x_test, y_test), notebook_accuracy=0.6573,
                      validation_data=(x_test, y_test), verbose=1)

# %% 4. Curves and mistakes
plot.plot_history(history, path=args.out / "curves.png", title="AlexNet-like on CIFAR-10")
plot.plot_misclassified(x_test, y_test, model.predict(x_test), class_names=cifar10.CLASS_NAMES,
                        path=args.out / "misclassified.png")
show()
