"""A dense network's repeats trained side by side in one TensorFlow program: the repeats' weights
stacked along a first axis, so that a training step of all of them is one call, with each layer's
product as one batched matrix product over the repeats.

A small dense network's step on a CPU is mostly the overhead of its ops, not their arithmetic: five
repeats of relu-30x100 run separately pay that overhead five times. Stacked they pay it once, for
products five times the size (benchmarks/repeats.py measures both). Three more things keep the
count of ops down, each measured on 2 cores with TensorFlow's profiler, in CPU time a step of five
relu-30x100 repeats:
- all the small weights are one variable, laid end to end, so Adam's update is one kernel call a
  step rather than one a layer's kernel and bias (about 0.45 ms of such calls became 0.1 ms, for a
  split and a concatenation of 0.09 ms); a weight over ALONE elements keeps a variable of its own;
- the loss is TensorFlow's cross-entropy on the last layer's logits, with accuracy from their
  largest, and no softmax is taken in training (Keras' own cross-entropy of a softmax's output
  finds its logits and calls the same op, so the softmax was work whose result went unused but
  for accuracy: 0.1 ms);
- each layer's gradient is written out (`dense`), where TensorFlow's gradient of a broadcast sum
  works out the broadcast's shape each step (some 0.1 ms).

Each repeat is the run it stands for: its initial weights are those its own seed gives (drawn by
the caller as a separate run draws them), its batches come in the order its own seed shuffles,
and its loss, gradients, penalty and optimizer step touch its own slice only. The sum of the
repeats' losses is what is differentiated, so each repeat's gradient is its own loss's. Keras'
optimizers update each element on its own (no norm across a variable: clipnorm is not stacked),
so one optimizer over the stacked variable steps each repeat as its own would. Its loss and
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
ALONE = 1 << 16  # elements of a stacked weight above which it is a variable of its own


def dense(x: Any, kernel: Any, bias: Any, input_gradient: bool = True) -> Any:
    """x times kernel plus bias for each repeat: x (repeats, batch, in), kernel (repeats, in, out),
    bias (repeats, out). Its gradient is written out (the bias's a sum over the batch), where
    TensorFlow's gradient of a broadcast sum adds ops that work out the broadcast's shape each
    step; without `input_gradient` (a first layer's input is data) none is computed for x."""
    import tensorflow as tf

    if not input_gradient:
        @tf.custom_gradient
        def first(kernel: Any, bias: Any) -> Any:
            def gradient(upstream: Any) -> Any:
                return tf.matmul(x, upstream, adjoint_a=True), tf.reduce_sum(upstream, axis=1)
            return tf.matmul(x, kernel) + bias[:, None, :], gradient
        return first(kernel, bias)

    @tf.custom_gradient
    def layer(x: Any, kernel: Any, bias: Any) -> Any:
        def gradient(upstream: Any) -> Any:
            return (tf.matmul(upstream, kernel, adjoint_b=True), tf.matmul(x, upstream, adjoint_a=True),
                    tf.reduce_sum(upstream, axis=1))
        return tf.matmul(x, kernel) + bias[:, None, :], gradient
    return layer(x, kernel, bias)


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
    # The repeats' small weights in one variable: [kernel, bias] per layer, each stacked over the
    # repeats, flattened and laid end to end, so that the optimizer's update of all of them is one
    # kernel call a step. A weight larger than ALONE elements is a variable of its own, as copying
    # it out of a shared one and its gradient back in would cost more than the call saved.
    shapes = [(count, *np.shape(w)) for w in inits[0]]
    sizes = [math.prod(shape) for shape in shapes]
    stacked_inits = [np.stack([init[i] for init in inits]) for i in range(len(shapes))]
    shared = [i for i, size in enumerate(sizes) if size <= ALONE]
    own = {i: keras.Variable(stacked_inits[i], name=f"stacked_{i}") for i, size in enumerate(sizes) if size > ALONE}
    flat = keras.Variable(np.concatenate([stacked_inits[i].ravel() for i in shared]), name="stacked_small_weights") \
        if shared else None
    variables = [*([flat] if flat is not None else []), *own.values()]
    hidden = keras.activations.get(spec.activation)
    strength = float(spec.strength) if spec.regularizer in ("l1", "l2") else 0.0
    classes = shapes[-1][-1]
    optimizer.build(variables)

    def unpacked() -> list[Any]:
        """The stacked [kernel, bias, ...], from their variables."""
        weights: dict[int, Any] = {i: variable.value for i, variable in own.items()}
        if flat is not None:
            parts = tf.split(flat.value, [sizes[i] for i in shared])
            weights.update({i: tf.reshape(part, shapes[i]) for i, part in zip(shared, parts, strict=True)})
        return [weights[i] for i in range(len(shapes))]

    def logits(x: Any, weights: list[Any], first_gradient: bool = True) -> Any:
        kernels, biases = weights[0::2], weights[1::2]
        for i, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
            x = dense(x, kernel, bias, input_gradient=i > 0 or first_gradient)
            x = hidden(x) if i < len(kernels) - 1 else x
        return x

    def layer_penalties(weights: list[Any]) -> list[Any]:
        """Each hidden kernel's penalty per repeat, as that repeat's own regularizer computes it (the
        hidden layers' kernels, as models.build regularizes them; not the output's)."""
        penalized = weights[0:-2:2]
        if spec.regularizer == "l2":
            return [2.0 * strength * tf.stack([tf.nn.l2_loss(k[i]) for i in range(count)]) for k in penalized]
        return [strength * tf.reduce_sum(tf.abs(k), axis=[1, 2]) for k in penalized]

    penalize = bool(strength) and len(shapes) > 2

    totals = tf.Variable(tf.zeros([count])), tf.Variable(tf.zeros([count])), tf.Variable(0.0)  # loss, right, seen

    @tf.function(jit_compile=False, autograph=False)
    def train(images: Any, labels: Any, orders: Any, first: Any, last: Any) -> Any:
        def step(index: Any) -> tuple[Any]:
            chosen = orders[:, index * batch:(index + 1) * batch]  # (repeats, batch): each its own order
            x = tf.cast(tf.gather(images, chosen), "float32") / divisor
            y = tf.gather(labels, chosen)
            with tf.GradientTape() as tape:
                weights = unpacked()
                z = logits(x, weights, first_gradient=False)
                # Keras' cross-entropy of a softmax's output is this op on the softmax's logits.
                cross = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.reshape(y, [-1]),
                                                                       tf.reshape(z, [-1, classes]))
                loss = tf.reduce_mean(tf.reshape(cross, tf.shape(y)), axis=1)
                if penalize:
                    loss += sum(layer_penalties(weights))
                objective = tf.reduce_sum(loss)  # each repeat's gradient is its own loss's
            optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables, strict=True))
            size = tf.cast(tf.shape(y)[1], "float32")
            right = tf.reduce_sum(tf.cast(tf.equal(tf.cast(tf.argmax(z, axis=-1), "int32"), y), "float32"), axis=1)
            totals[0].assign_add(loss * size)
            totals[1].assign_add(right)
            totals[2].assign_add(size)
            return (index + 1,)

        tf.while_loop(lambda index: index < last, step, (first,), parallel_iterations=1)
        return totals[0] / totals[2], totals[1] / totals[2]

    val_shape = tf.TensorSpec([None, x_val[0].size], tf.as_dtype(x_val.dtype))
    predict = tf.function(
        lambda part: keras.activations.softmax(logits(tf.cast(part, "float32")[None] / divisor, unpacked())),
        input_signature=[val_shape], autograph=False, jit_compile=False)
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
        layers = [np.asarray(v) for v in layer_penalties(unpacked())] if penalize else []
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
    optimizer.finalize_variable_values(variables)
    stacked = [np.asarray(w) for w in unpacked()]
    trained = [[w[i] for w in stacked] for i in range(count)]
    return {"histories": histories, "probs": probs, "weights": trained, "seconds": seconds,
            "steps": int(keras.ops.convert_to_numpy(optimizer.iterations))}
