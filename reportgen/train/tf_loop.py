"""A classifier's training under TensorFlow, with the data held by TensorFlow, for `run.train`.

Keras' own `fit` on NumPy arrays builds a tf.data pipeline that slices, shuffles and copies every
batch, and a second one for each epoch's validation pass. On 2 CPU cores that was a fifth of a
small dense model's epoch, and validation another quarter (a (200,100) network: 1.2 s an epoch
without validation, 1.5 s with it, against 0.95 s here). Here the training and validation images
are held once, as uint8 tensors; an epoch's shuffled order is one tensor; and a tenth of an epoch is
one call of a graph that loops over Keras' own `train_step`, gathering each batch from the held
images. The host waits only between those calls, to move the progress bar and stop on a NaN. The
last batch of an epoch is short when the images do not divide into batches, as in Keras, and runs
in the same loop: a TensorFlow graph takes any batch size. The validation pass is one forward pass
in parts; its class probabilities from the last epoch feed the misclassified-image grid, so no
prediction pass follows.

Both graphs are traced without AutoGraph, as Keras' own `fit` traces its steps (a model Keras
trains, this trains): converting Keras' Python took a tenth of a second of each run's first
epoch (relu-200x100 on 2 cores: 0.40 s against 0.34 s for the first call, 0.048 s against 0.026 s
for the first validation pass).

The semantics are Keras': the same model, loss, optimizer, metrics, batch size, a fresh shuffle
each epoch and a short last batch. Validation loss is the mean cross-entropy plus the model's
regularization losses, as `evaluate` reports it. The epoch's order comes from NumPy's generator
seeded with the run's seed, as under JAX (jax_loop.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reportgen.project.dataset import divisor_of
from reportgen.train.jax_loop import end_epoch, floats
from reportgen.train.outcome import PROGRESS_TICKS  # times an epoch the host waits for the graph and reports progress

VALIDATION_PART = 1000  # images a forward pass of validation takes at once: a CNN's activations stay small


def fit(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        batch_size: int, epochs: int, seed: int, watch: Any) -> tuple[dict[str, list[float]], np.ndarray]:
    """Train a compiled Keras model (TensorFlow backend) on
    inputs scaled as training expects them (uint8 images divided by 255, floats as they are) in the
    graph. `watch` is a keras Callback (on_epoch_begin, on_train_batch_end, on_epoch_end; it may
    set model.stop_training). Returns the history, as `fit` would, and the last epoch's validation
    class probabilities."""
    import keras
    import tensorflow as tf

    from reportgen.train.tf_kernels import fuse_penalties, matmul_input_gradients

    n = len(x_train)
    divisor = divisor_of(x_train)
    steps = math.ceil(n / batch_size)
    chunk = max(1, math.ceil(steps / PROGRESS_TICKS))
    images, labels = tf.constant(x_train), tf.constant(y_train.astype("int32"))

    def scaled(part: Any) -> Any:
        return tf.cast(part, "float32") / divisor  # as the NumPy path scales them

    # The data are arguments, not tensors closed over, so the graph holds no copy of them.
    @tf.function(jit_compile=False, autograph=False)
    def train(images: Any, labels: Any, order: Any, first: Any, last: Any) -> dict[str, Any]:
        """Steps first..last-1 of the epoch whose shuffled order is `order`, in one call."""
        def step(index: Any) -> tuple[Any]:
            batch = order[index * batch_size:(index + 1) * batch_size]  # the last one is short
            model.train_step((scaled(tf.gather(images, batch)), tf.gather(labels, batch)))
            return (index + 1,)

        tf.while_loop(lambda index: index < last, step, (first,), parallel_iterations=1)
        return model.get_metrics_result()

    shape = tf.TensorSpec([None, *x_val.shape[1:]], tf.as_dtype(x_val.dtype))
    forward = tf.function(lambda part: model(scaled(part), training=False), input_signature=[shape], autograph=False,
                          jit_compile=False)

    def validate() -> tuple[np.ndarray, dict[str, float]]:
        probs = np.concatenate([np.asarray(forward(tf.constant(x_val[i:i + VALIDATION_PART])), dtype="float32")
                                for i in range(0, len(x_val), VALIDATION_PART)])
        penalty = float(sum(float(loss) for loss in model.losses))  # the regularizers, from the weights
        loss = float(np.mean(keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y_val, probs))))
        return probs, {"val_loss": loss + penalty, "val_accuracy": float(np.mean(probs.argmax(axis=1) == y_val))}

    # Keras' fit builds the optimizer's and the metrics' variables from a first batch; so here.
    model._symbolic_build(data_batch=(x_train[:batch_size].astype("float32") / divisor, y_train[:batch_size]))
    fuse_penalties(model)  # L2 as one kernel a weight, once every weight exists (a subclassed model's too)
    history: dict[str, list[float]] = {}
    probs = np.zeros((0, 0), dtype="float32")
    rng = np.random.default_rng(seed)
    model.stop_training = False
    for epoch in range(epochs):
        model.reset_metrics()
        watch.on_epoch_begin(epoch)
        order = tf.constant(rng.permutation(n).astype("int32"))
        logs: dict[str, float] = {}
        for first in range(0, steps, chunk):
            last = min(first + chunk, steps)
            with matmul_input_gradients():  # a large layer's input gradient, when the step is traced
                logs = floats(train(images, labels, order, tf.constant(first), tf.constant(last)))
            watch.on_train_batch_end(last - 1, logs)
            if model.stop_training:
                break
        probs, val_logs = validate()
        epoch_logs = {**logs, **val_logs}
        if end_epoch(model, watch, history, epoch, epoch_logs):
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit ends (optimizers with EMA)
    return history, probs
