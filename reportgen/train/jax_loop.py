"""A classifier's training under JAX, with the data on the device, for `run.train`.

Keras' own `fit` under JAX slices every batch from host memory and copies it to the device, and
rebuilds its data pipeline and evaluation each epoch; on a GPU that, not arithmetic, is most of a
small model's epoch. Here the training and validation images go to the device once, as uint8; an
epoch's shuffled order goes once per epoch; and each step is Keras' own `train_step` with the batch
gathered on the device, dispatched ahead without waiting for the device. The host waits only at a
tenth of an epoch, to move the progress bar and stop on a NaN. One program more trains the short
last batch, and one the whole validation pass, whose class probabilities from the last epoch feed
the misclassified-image grid, so no prediction pass follows. Those two compile on other threads
while the first steps compile and run.

On a GPU (or any accelerator) each tenth of an epoch is one call of a program that loops over its
steps on the device, since one call per step leaves such a device idle between the host's
dispatches. On the CPU the steps are separate calls: XLA's CPU compiler ran the CNN's step ten
times slower inside a loop (434 s against 44 s for an epoch of 2,000 images).
REPORTGEN_DEVICE_LOOP=1 or 0 chooses either way on any device.

On a GPU, a model without convolutions is compiled without XLA's autotuning, which times candidate
kernels for each new shape. On an H100 that cost 1-3 s per dense run, about half of such a run.
A model with convolutions keeps it: without it, the CNN ran several times slower there.
REPORTGEN_XLA_AUTOTUNE=0-4 sets XLA's level for every model. REPORTGEN_XLA_OPTIONS, a JSON object of
XLA's compile options (`{"xla_gpu_enable_triton_gemm": false}`), is added to the programs of these
training loops and the GAN's, to try XLA's other settings on a machine without changing the code.

The semantics are Keras': the same model, loss, optimizer, metrics, batch size, a fresh shuffle
each epoch and a short last batch. Validation loss is the mean cross-entropy plus the model's
regularization losses, as `evaluate` reports it.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from reportgen.project.dataset import divisor_of
from reportgen.project.settings import Environment
from reportgen.train.outcome import PROGRESS_TICKS  # times an epoch the host waits for the device and reports progress
from reportgen.train.xla import compiler_options, device_loop


def fit(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        batch_size: int, epochs: int, seed: int, watch: Any,
        env: Environment) -> tuple[dict[str, list[float]], np.ndarray]:
    """Train a compiled Keras model (JAX backend) on
    inputs scaled as training expects them (uint8 images divided by 255, floats as they are) on the device.
    `watch` is a keras Callback (on_epoch_begin, on_train_batch_end, on_epoch_end; it may set
    model.stop_training). Returns the history, as `fit` would, and the last epoch's validation
    class probabilities."""
    import jax
    import jax.numpy as jnp
    import keras

    n = len(x_train)
    divisor = divisor_of(x_train)
    full = n // batch_size  # whole batches; a remainder is one short batch at the end
    short = n - full * batch_size
    chunk = max(1, math.ceil(full / PROGRESS_TICKS))
    train = (jax.device_put(x_train), jax.device_put(y_train.astype("int32")))
    xv_dev, yv_dev = jax.device_put(x_val), jax.device_put(y_val.astype("int32"))

    def scaled(images: Any) -> Any:
        return images.astype("float32") / divisor  # as the NumPy path scales them

    # The data are arguments, not constants closed over: XLA would fold a constant into the program.
    def batch(data: Any, order: Any, start: Any, size: int) -> tuple[Any, Any]:
        index = jax.lax.dynamic_slice_in_dim(order, start, size)
        return scaled(jnp.take(data[0], index, axis=0)), jnp.take(data[1], index, axis=0)

    options = compiler_options(model, env=env)
    jit = partial(jax.jit, compiler_options=options or None)

    def one_step(state: Any, data: Any, order: Any, index: Any) -> tuple[Any, Any]:
        return model.train_step(state, batch(data, order, index * batch_size, batch_size))

    def looped(state: Any, data: Any, order: Any, first: Any, last: Any) -> tuple[Any, Any]:
        """Steps first..last-1 (first < last) in one call, looping on the device."""
        logs_shape = jax.eval_shape(one_step, state, data, order, first)[0]
        logs = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), logs_shape)
        return jax.lax.fori_loop(first, last, lambda i, carry: one_step(carry[1], data, order, i), (logs, state))

    in_loop = device_loop(env)
    stepped = jit(looped if in_loop else one_step, donate_argnums=0)

    def steps(state: Any, data: Any, order: Any, first: int, last: int) -> tuple[Any, Any]:
        if in_loop:
            return stepped(state, data, order, first, last)
        for index in range(first, last):  # dispatched ahead; the host waits only for the logs
            logs, state = stepped(state, data, order, index)
        return logs, state

    @partial(jit, donate_argnums=0)
    def short_step(state: Any, data: Any, order: Any) -> tuple[Any, Any]:
        return model.train_step(state, batch(data, order, full * batch_size, short))

    val_chunk = min(len(x_val), 2000)
    val_pad = -len(x_val) % val_chunk

    @jit
    def validate(trainable: Any, non_trainable: Any, xv_dev: Any, yv_dev: Any) -> tuple[Any, Any]:
        images = jnp.pad(xv_dev, [(0, val_pad)] + [(0, 0)] * (xv_dev.ndim - 1))
        images = images.reshape((-1, val_chunk, *xv_dev.shape[1:]))

        def forward(_: Any, part: Any) -> Any:
            probs, _, losses = model.stateless_call(trainable, non_trainable, scaled(part), training=False,
                                                    return_losses=True)
            return None, (probs, sum(losses) if losses else jnp.zeros(()))

        _, (probs, penalties) = jax.lax.scan(forward, None, images)
        probs = probs.reshape((-1, probs.shape[-1]))[: len(x_val)].astype("float32")
        # Every part saw the same weights, so every part's penalty is the same: count it once.
        loss = jnp.mean(keras.losses.sparse_categorical_crossentropy(yv_dev, probs)) + penalties[0]
        accuracy = jnp.mean((jnp.argmax(probs, axis=-1) == yv_dev).astype("float32"))
        return probs, {"val_loss": loss, "val_accuracy": accuracy}

    # Keras' fit builds the optimizer's and the metrics' variables from a first batch; so here.
    model._symbolic_build(data_batch=(x_train[:batch_size].astype("float32") / divisor, y_train[:batch_size]))
    history: dict[str, list[float]] = {}
    probs = np.zeros((0, 0), dtype="float32")
    rng = np.random.default_rng(seed)
    model.stop_training = False
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="reportgen-compile") as pool:
        # The short step and the validation pass compile on other cores while the first steps
        # compile and run here: compiling, not arithmetic, is most of a small model's run on a GPU.
        state, any_order = _state(model), jax.ShapeDtypeStruct((n,), jnp.int32)  # shapes, for compiling
        later_short = pool.submit(short_step.lower(state, train, any_order).compile) if short else None
        later_validate = pool.submit(validate.lower(state[0], state[1], xv_dev, yv_dev).compile)
        for epoch in range(epochs):
            model.reset_metrics()
            watch.on_epoch_begin(epoch)
            state = _state(model)
            order = jax.device_put(rng.permutation(n).astype("int32"))
            logs: Any = {}
            for first in range(0, max(full, 1), chunk):  # fewer images than a batch: the short batch alone
                last = min(first + chunk, full)
                if last > first:
                    logs, state = steps(state, train, order, first, last)
                if last == full and later_short is not None:
                    logs, state = later_short.result()(state, train, order)
                watch.on_train_batch_end(last - 1 if last < full or not short else full, floats(logs))
                if model.stop_training:
                    break
            _assign(model, state)
            epoch_logs = floats(logs)
            probs_dev, val_logs = later_validate.result()(_values(model.trainable_variables),
                                                          _values(model.non_trainable_variables), xv_dev, yv_dev)
            epoch_logs.update(floats(val_logs))
            probs = np.asarray(probs_dev)
            if end_epoch(model, watch, history, epoch, epoch_logs):
                break
    model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit ends (optimizers with EMA)
    return history, probs


def _state(model: Any) -> tuple[list[Any], ...]:
    return (_values(model.trainable_variables), _values(model.non_trainable_variables),
            _values(model.optimizer.variables), _values(model.metrics_variables))


def _values(variables: list[Any]) -> list[Any]:
    return [v.value for v in variables]


def _assign(model: Any, state: Any) -> None:
    trainable, non_trainable, optimizer, metrics = state
    for group, values in ((model.trainable_variables, trainable), (model.non_trainable_variables, non_trainable),
                          (model.optimizer.variables, optimizer), (model.metrics_variables, metrics)):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)


def floats(logs: Any) -> dict[str, float]:
    return {k: float(v) for k, v in dict(logs).items()}


def end_epoch(model: Any, watch: Any, history: dict[str, list[float]], epoch: int, logs: dict[str, float]) -> bool:
    """An epoch's figures into the history and to the callback; whether training stops after it.
    Shared with tf_loop.py."""
    for key, value in logs.items():
        history.setdefault(key, []).append(value)
    watch.on_epoch_end(epoch, logs)
    return bool(model.stop_training)
