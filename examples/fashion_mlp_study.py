"""A dense network on Fashion-MNIST, and what each knob does.

Reproduces the notebook's MLP study (test accuracy):

  Flatten -> Dense(128, sigmoid) -> Dense(10, softmax), adam, batch 64, 10 epochs: > 80%;
  512 and 1024 units; the errors without Flatten and with 5 output units; 15 and 30 epochs, where the curves show overfitting; a custom
  callback that stops once the loss is <= 0.4; sigmoid vs relu with 3x128; zeros /
  random_normal / glorot_uniform initialisation; optimisers Adam 87.76%, Adagrad 70.9%,
  RMSprop, SGD; and the final 3x256 relu + BatchNormalization + Dropout .2 with
  EarlyStopping(val_loss, patience 5): about 89-90%; here also with
  restore_best_weights=True, which keeps the best epoch's weights.

The 15- and 30-epoch figures come from one 30-epoch run with the test set as
validation data: its val_accuracy after epoch 15 is the 15-epoch test accuracy.

    python examples/fashion_mlp_study.py
    python examples/fashion_mlp_study.py --quick

Writes metrics.json and one chart per comparison (units.png, overfitting.png,
activations.png, initializers.png, optimizers.png, final.png) plus misclassified.png.
"""
# %% 0. Imports and flags
from minicnn import Callback, EarlyStopping, Sequential, plot
from minicnn.datasets import fashion_mnist
from minicnn.layers import BatchNormalization, Dense, Dropout, Flatten
from minicnn.optimizers import SGD, Adagrad, Adam, RMSprop

from _common import Results, parse_args, show, take   # examples/_common.py

args = parse_args("fashion_mlp_study", __doc__, epochs=None, batch_size=64)
results = Results("fashion_mlp_study", "Fashion-MNIST MLP study", args)
epochs = lambda notebook_epochs: args.epochs or notebook_epochs


def chart(runs, filename, title):
    """One comparison chart of the named runs."""
    plot.plot_history(results.histories(runs), path=args.out / filename, title=title)


# %% 1. Data: pixels scaled to [0, 1], integer labels
(x_train, y_train), (x_test, y_test) = take(args, *fashion_mnist.load_data())
x_train, x_test = x_train / 255.0, x_test / 255.0
test = (x_test, y_test)
loss = "sparse_categorical_crossentropy"


# %% 2. The first model: 128 sigmoid units
def mlp(units=128, activation="sigmoid", layers=1, initializer="glorot_uniform"):
    return Sequential([
        Flatten(input_shape=(28, 28)),
        *[Dense(units, activation=activation, kernel_initializer=initializer) for _ in range(layers)],
        Dense(10, activation="softmax"),
    ], seed=args.seed)


model = mlp()
model.summary()
model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
results.fit("128 sigmoid", model, x_train, y_train, test, epochs=epochs(10))

# %% 3. Wider: 512 and 1024 units
for units in (512, 1024):
    model = mlp(units)
    model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
    results.fit(f"{units} sigmoid", model, x_train, y_train, test, epochs=epochs(10))
chart(["128 sigmoid", "512 sigmoid", "1024 sigmoid"], "units.png", "Hidden units")

# %% 4. What minicnn says when the model does not fit the data
mistakes = {
    "without Flatten": lambda: Sequential([Dense(128, activation="sigmoid", input_shape=(28, 28)),
                                           Dense(10, activation="softmax")]),
    "Dense(5) for 10 classes": lambda: Sequential([Flatten(input_shape=(28, 28)),
                                                   Dense(128, activation="sigmoid"),
                                                   Dense(5, activation="softmax")]),
}
# (A plain function as activation=, such as lambda x: relu(x, alpha=0.1), is no mistake:
# minicnn recognises it, as Keras accepts it; see minicnn/activations.py.)
errors = {}
for what, build in mistakes.items():
    try:
        model = build()
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        model.fit(x_train[:64], y_train[:64], epochs=1, verbose=0)
    except (ValueError, TypeError) as error:
        errors[what] = f"{type(error).__name__}: {error}"
        print(f"\n{what}:\n  {errors[what]}")
results.data["errors"] = errors
results.save()

# %% 5. Longer: 30 epochs with the test set as validation data; overfitting shows
model = mlp()
model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
history = results.fit("128 sigmoid, 30 epochs", model, x_train, y_train, test, epochs=epochs(30),
                      validation_data=test)
for n in (15, 30):
    if len(history.history["val_accuracy"]) >= n:
        print(f"test accuracy after {n} epochs: {history.history['val_accuracy'][n - 1]:.4f}")
chart(["128 sigmoid, 30 epochs"], "overfitting.png", "30 epochs: train vs test")


# %% 6. A custom callback: stop once the training loss is at most 0.4
class StopAtLoss(Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs.get("loss") <= 0.4:
            print(f"\nLoss is low ({logs['loss']:.4f}), so cancelling training!")
            self.model.stop_training = True


model = mlp()
model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
results.fit("stop at loss <= 0.4", model, x_train, y_train, test, epochs=epochs(30), callbacks=[StopAtLoss()])

# %% 7. Sigmoid vs relu, 3 hidden layers of 128
for activation in ("sigmoid", "relu"):
    model = mlp(activation=activation, layers=3)
    model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
    results.fit(f"3x128 {activation}", model, x_train, y_train, test, epochs=epochs(10), validation_data=test)
chart(["3x128 sigmoid", "3x128 relu"], "activations.png", "sigmoid vs relu, 3x128")

# %% 8. Initialisation: zeros (every unit the same: nothing to break the symmetry), random normal, Glorot
for initializer in ("zeros", "random_normal", "glorot_uniform"):
    model = mlp(activation="relu", layers=3, initializer=initializer)
    model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
    results.fit(f"init {initializer}", model, x_train, y_train, test, epochs=epochs(10), validation_data=test)
chart([f"init {name}" for name in ("zeros", "random_normal", "glorot_uniform")],
      "initializers.png", "Initialisers, 3x128 relu")

# %% 9. Optimisers, each with Keras's default learning rate (the first model)
for optimizer, notebook in ((Adam, 0.8776), (Adagrad, 0.709), (RMSprop, None), (SGD, None)):
    model = mlp()
    model.compile(optimizer=optimizer(), loss=loss, metrics=["accuracy"])
    results.fit(f"optimizer {optimizer.__name__}", model, x_train, y_train, test, notebook_accuracy=notebook,
                epochs=epochs(10), validation_data=test)
chart([f"optimizer {name}" for name in ("Adam", "Adagrad", "RMSprop", "SGD")], "optimizers.png", "Optimisers")

# %% 10. The final model: 3x256 relu, BatchNormalization, Dropout .2, EarlyStopping
def final_model():
    model = Sequential([Flatten(input_shape=(28, 28))], seed=args.seed)
    for _ in range(3):
        model.add(Dense(256, activation="relu"))
        model.add(BatchNormalization())
        model.add(Dropout(0.2))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer=Adam(), loss=loss, metrics=["accuracy"])
    return model


final_model().summary()
# As the notebook ran it: training stops 5 epochs after the best val_loss and keeps the
# weights it has then. Then the same with restore_best_weights=True (Keras has it too),
# which goes back to the weights of the best epoch.
for name, restore in (("final 3x256 relu + BN + Dropout", False),
                      ("final, restore_best_weights", True)):
    model = final_model()
    early_stopping = EarlyStopping(monitor="val_loss", patience=5, verbose=1, restore_best_weights=restore)
    results.fit(name, model, x_train, y_train, test, epochs=epochs(100), validation_split=0.1,
                callbacks=[early_stopping])   # notebook: about 89-90%
chart(["final 3x256 relu + BN + Dropout", "final, restore_best_weights"], "final.png",
      "Final MLP with EarlyStopping")
plot.plot_misclassified(x_test, y_test, model.predict(x_test), class_names=fashion_mnist.CLASS_NAMES,
                        path=args.out / "misclassified.png")
show()
