"""The article's Keras program, as a reference timing on this machine (needs TensorFlow; not a dependency).

Run by ``seed_parity.py --keras-python PY`` with a Python that has TensorFlow installed; reads MNIST from an
.npz the caller writes (the data digits verified), prints one JSON line. The model and recipe are the
article's, with ``learning_rate=`` instead of the ``lr=`` current Keras rejects.
"""

import json
import sys
import time

import numpy as np


def main(npz_path: str, seed: int) -> None:
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    data = np.load(npz_path)
    x_train = data["train_images"].reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = data["test_images"].reshape(-1, 28, 28, 1).astype("float32") / 255
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.001),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t0 = time.perf_counter()
    model.fit(x_train, data["train_labels"], epochs=10, validation_split=0.2, verbose=0)
    seconds = time.perf_counter() - t0
    _, acc = model.evaluate(x_test, data["test_labels"], verbose=0)
    print(
        json.dumps(
            {
                "test_accuracy": float(acc),
                "train_seconds": seconds,
                "parameters": model.count_params(),
                "keras": keras.__version__,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
