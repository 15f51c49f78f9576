"""A dense network's repeats trained side by side in one TensorFlow program: the repeats' weights
stacked along a first axis, so that a training step of all of them is one call, with each layer's
product as one batched matrix product over the repeats.

A small dense network's step on a CPU is mostly the overhead of its ops, not their arithmetic: five
repeats of relu-30x100 run separately pay that overhead five times. Stacked they pay it once, for
products five times the size (benchmarks/repeats.py measures both).

Each repeat is the run it stands for: its initial weights are those its own seed gives (built by
the caller as a separate run builds them), its batches come in the order its own seed shuffles,
and its loss, gradients, penalty and optimizer step touch its own slice only. The sum of the
repeats' losses is what is differentiated, so each repeat's gradient is its own loss's. Keras'
optimizers update each element on its own (no norm across a variable: clipnorm is not stacked),
so one optimizer over the stacked variables steps each repeat as its own would. Its loss and
accuracy per epoch are averaged over its batches as Keras' metrics average them.

What differs from separate runs is the order of floating-point operations: a batched product, and
sums over a stacked tensor, round in the last bits otherwise than their unstacked forms, and
training carries such differences on. The weights agree to a few parts in a million after an
epoch, not bit for bit; the metrics agree to within an image or two (tests/train/test_stacked.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reportgen.project.dataset import divisor_of
from reportgen.project.spec import MLPSpec
from reportgen.train.outcome import PROGRESS_TICKS

VALIDATION_PART = 2000


class Diverged(Exception):
    """A repeat's loss became NaN or infinite: the caller trains the repeats one by one instead, where
    each is marked diverged on its own."""


def fit(spec: MLPSpec, inits: list[list[np.ndarray]], seeds: list[int], optimizer: Any, x_train: np.ndarray,
        y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, reporter: Any) -> dict[str, Any]:
    """Train the repeats whose initial weights are `inits` (each a Dense network's [kernel, bias, ...])
    and whose shuffles are seeded by `seeds`, with `optimizer` (a fresh Keras optimizer).
    Returns per repeat its history, last validation class probabilities and trained weights, and
    the seconds each epoch took (all repeats together)."""
    import time

    import keras
    import tensorflow as tf

    count = len(inits)
    n = len(x_train)
    divisor = divisor_of(x_train)
    batch = spec.batch_size
    steps = math.ceil(n / batch)
    chunk = max(1, math.ceil(steps / PROGRESS_TICKS))
    images, labels = tf.constant(x_train.reshape(n, -1)), tf.constant(y_train.astype("int32"))
    weights = [keras.Variable(np.stack([init[i] for init in inits]), name=f"stacked_{i}")
               for i in range(len(inits[0]))]
    kernels, biases = weights[0::2], weights[1::2]
    hidden = keras.activations.get(spec.activation)
    strength = float(spec.strength) if spec.regularizer in ("l1", "l2") else 0.0
    optimizer.build(weights)

    def forward(x: Any) -> Any:
        for i, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
            x = tf.matmul(x, kernel) + bias[:, None, :]
            x = hidden(x) if i < len(kernels) - 1 else keras.activations.softmax(x)
        return x

    penalized = kernels[:-1]  # the hidden layers' kernels, as models.build regularizes them (not the output's)

    def layer_penalties() -> list[Any]:
        """Each hidden kernel's penalty per repeat, as that repeat's own regularizer computes it."""
        if spec.regularizer == "l2":
            return [2.0 * strength * tf.stack([tf.nn.l2_loss(k[i]) for i in range(count)]) for k in penalized]
        return [strength * tf.reduce_sum(tf.abs(k), axis=[1, 2]) for k in penalized]

    def penalties() -> Any:
        if not strength or not penalized:
            return tf.zeros([count])
        return sum(layer_penalties())

    totals = tf.Variable(tf.zeros([count])), tf.Variable(tf.zeros([count])), tf.Variable(0.0)  # loss, right, seen

    @tf.function(jit_compile=False, autograph=False)
    def train(images: Any, labels: Any, orders: Any, first: Any, last: Any) -> Any:
        def step(index: Any) -> tuple[Any]:
            chosen = orders[:, index * batch:(index + 1) * batch]  # (repeats, batch): each its own order
            x = tf.cast(tf.gather(images, chosen), "float32") / divisor
            y = tf.gather(labels, chosen)
            with tf.GradientTape() as tape:
                probs = forward(x)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs), axis=1) + penalties()
                objective = tf.reduce_sum(loss)  # each repeat's gradient is its own loss's
            optimizer.apply_gradients(zip(tape.gradient(objective, weights), weights, strict=True))
            size = tf.cast(tf.shape(y)[1], "float32")
            right = tf.reduce_sum(tf.cast(tf.equal(tf.cast(tf.argmax(probs, axis=-1), "int32"), y), "float32"), axis=1)
            totals[0].assign_add(loss * size)
            totals[1].assign_add(right)
            totals[2].assign_add(size)
            return (index + 1,)

        tf.while_loop(lambda index: index < last, step, (first,), parallel_iterations=1)
        return totals[0] / totals[2], totals[1] / totals[2]

    val_shape = tf.TensorSpec([None, x_val[0].size], tf.as_dtype(x_val.dtype))
    predict = tf.function(lambda part: forward(tf.cast(part, "float32")[None] / divisor), input_signature=[val_shape],
                          autograph=False, jit_compile=False)
    flat_val = x_val.reshape(len(x_val), -1)

    rngs = [np.random.default_rng(seed) for seed in seeds]
    histories: list[dict[str, list[float]]] = [{} for _ in range(count)]
    seconds: list[float] = []
    probs = np.zeros((count, 0, 0), dtype="float32")
    for epoch in range(spec.epochs):
        started = time.perf_counter()
        reporter.epoch_start(epoch + 1, spec.epochs, steps)
        for variable in totals:
            variable.assign(tf.zeros_like(variable))
        orders = tf.constant(np.stack([rng.permutation(n) for rng in rngs]).astype("int32"))
        for first in range(0, steps, chunk):
            last = min(first + chunk, steps)
            loss, accuracy = (np.asarray(v) for v in train(images, labels, orders, tf.constant(first),
                                                             tf.constant(last)))
            if not np.all(np.isfinite(loss)):
                raise Diverged(f"repeat {int(np.flatnonzero(~np.isfinite(loss))[0]) + 1} diverged in epoch "
                               f"{epoch + 1}")
            reporter.batch_end(last, {"loss": float(loss[0]), "accuracy": float(accuracy[0])})
        probs = np.concatenate([np.asarray(predict(tf.constant(flat_val[i:i + VALIDATION_PART])), dtype="float32")
                                for i in range(0, len(flat_val), VALIDATION_PART)], axis=1)
        # As a run's own validation adds its layers' penalties: one by one, in Python's floats.
        layers = [np.asarray(v) for v in layer_penalties()] if strength and penalized else []
        penalty = [sum(float(v[i]) for v in layers) for i in range(count)]
        for i, history in enumerate(histories):
            cross = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y_val, probs[i]))
            logs = {"loss": float(loss[i]), "accuracy": float(accuracy[i]),
                    "val_loss": float(np.mean(cross)) + float(penalty[i]),
                    "val_accuracy": float(np.mean(probs[i].argmax(axis=1) == y_val))}
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
        seconds.append(time.perf_counter() - started)
        reporter.epoch_end(epoch + 1, {k: v[-1] for k, v in histories[0].items()})
    optimizer.finalize_variable_values(weights)
    trained = [[np.asarray(w)[i] for w in weights] for i in range(count)]
    return {"histories": histories, "probs": probs, "weights": trained, "seconds": seconds,
            "steps": int(keras.ops.convert_to_numpy(optimizer.iterations))}
