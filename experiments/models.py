"""Model builders for `kind = "custom"` runs: each returns an uncompiled keras.Model."""

import keras


def dropout_mlp(width: int, dropout: float) -> keras.Model:
    """One wide hidden layer with dropout before the classifier."""
    return keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(width),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(10),
        keras.layers.Activation("softmax", dtype="float32"),  # float32 output under mixed precision
    ])
