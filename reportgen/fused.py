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

import contextlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ReportgenError
from .run import PROGRESS_TICKS  # times an epoch the host waits for the device and reports progress

LOOP_ENV = "REPORTGEN_DEVICE_LOOP"  # 1: a tenth of an epoch per call, 0: a step per call; default by device
AUTOTUNE_ENV = "REPORTGEN_XLA_AUTOTUNE"  # XLA's GPU autotuning level, 0-4, for every model
OPTIONS_ENV = "REPORTGEN_XLA_OPTIONS"  # a JSON object of XLA compile options, for the training loops
CACHE_MB_ENV = "REPORTGEN_XLA_CACHE_MB"  # disk the build's compiled programs may take, in megabytes
CACHE_MB_DEFAULT = 2048
PROGRAM, LAST_USE = "-cache", "-atime"  # JAX's names for a stored program and its last-use time
LOOP_VALUES, AUTOTUNE_LEVELS = ("0", "1"), ("0", "1", "2", "3", "4")


def _switch(name: str, allowed: tuple[str, ...]) -> str | None:
    value = os.environ.get(name, "").strip()
    if value and value not in allowed:
        raise ReportgenError(f"environment variable {name}={value!r}: expected one of {', '.join(allowed)}")
    return value or None


def device_loop() -> bool:
    """Whether steps loop inside one compiled program (accelerators) or are one call each (CPU)."""
    import jax

    chosen = _switch(LOOP_ENV, LOOP_VALUES)
    return chosen == "1" if chosen else jax.default_backend() != "cpu"


def compiler_options(*models: Any, platform: str | None = None) -> dict[str, Any]:
    """XLA options for the JAX programs that train `models` on `platform` (default: JAX's own).
    On a GPU: no autotuning for models without convolutions, XLA's default for the rest, unless
    REPORTGEN_XLA_AUTOTUNE says otherwise. Elsewhere: none. REPORTGEN_XLA_OPTIONS is added last."""
    import jax

    level = _switch(AUTOTUNE_ENV, AUTOTUNE_LEVELS)
    options: dict[str, Any] = {}
    if (platform or jax.default_backend()) == "gpu":
        if level is not None:
            options["xla_gpu_autotune_level"] = int(level)
        elif not any(_convolves(m) for m in models):
            options["xla_gpu_autotune_level"] = 0
    return {**options, **extra_options()}


def extra_options() -> dict[str, Any]:
    """The options REPORTGEN_XLA_OPTIONS adds to the programs of reportgen's training loops (a
    classifier's steps and validation pass, a GAN's steps and sampler); {} when it is unset.
    Keras' own eager work (weight initialisers, `predict`) does not see them: XLA_FLAGS reaches
    every program."""
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    example = '{"xla_gpu_enable_triton_gemm": false}'
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: not JSON ({exc.msg} at character {exc.pos}); "
                             f"expected an object of XLA options, such as {example}") from None
    if not isinstance(options, dict) or not options:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: expected a non-empty JSON object of XLA "
                             f"options, such as {example}; got {text!r}")
    bad = [f"{json.dumps(name)}: {json.dumps(value)}" for name, value in options.items()
           if not name.startswith("xla_") or isinstance(value, (list, dict)) or value is None]
    if bad:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: {'; '.join(bad)}: expected XLA options (names "
                             "that start with xla_) set to true, false, a number or a string")
    return dict(options)


def program_cache_bytes() -> int:
    """How much disk the build's compiled JAX programs may take: REPORTGEN_XLA_CACHE_MB megabytes
    (default 2048; 0 keeps none). Past it, the programs used least recently are deleted."""
    text = os.environ.get(CACHE_MB_ENV, "").strip()
    if not text:
        return CACHE_MB_DEFAULT * 2**20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise ReportgenError(f"environment variable {CACHE_MB_ENV}={text!r}: expected a size in megabytes, "
                             "0 or more, such as 2048 or 0.5")
    return int(megabytes * 2**20)


def keep_programs(folder: str) -> None:
    """Keep every program JAX compiles in `folder`, within program_cache_bytes(), safely shared by
    the processes of a build (--jobs workers, a second build of the same project).

    JAX with a size bound reads and writes the folder under a file lock, and writes each program
    before the file that records its last use; without a bound it writes without a lock, so one
    worker could read another's program half-written, and a program cut short by a killed
    process stayed for good, read, refused ("truncated stream") and compiled again by every run.
    A program without its last-use file is such a leftover and is deleted here, under that lock,
    as is one written since the last such tidying that does not decompress; so are the programs
    used least recently while the folder is over its bound (JAX checks the bound only when it adds
    a program)."""
    import filelock
    import jax

    size = program_cache_bytes()
    try:
        if size:
            os.makedirs(folder, exist_ok=True)
        if os.path.isdir(folder) and _jax_layout_known():  # at 0, what earlier builds kept goes too
            with filelock.FileLock(os.path.join(folder, ".lockfile"), timeout=60):  # the lock JAX takes there
                _tidy_programs(Path(folder), size)
    except OSError:  # a Dask worker on another machine, where the build's folder cannot be made: compile
        return
    if not size:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_compilation_cache_max_size", size)
    # Every program is kept, however quick to compile: a model's weight initialisers are a dozen
    # small programs compiled one after another before training starts (on 2 CPU cores,
    # relu-200x100 on 4,000 images: 2.1 s rebuilding with only the slow ones kept, 1.1 s with all).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def _jax_layout_known() -> bool:
    """Whether this JAX names its programs and their last-use files as _tidy_programs expects (its
    private names: another JAX is left to keep the folder alone rather than have it emptied)."""
    try:
        from jax._src import lru_cache
        from jax._src.compilation_cache import decompress_executable  # noqa: F401  (used by _whole)
    except ImportError:
        return False
    return (getattr(lru_cache, "_CACHE_SUFFIX", None), getattr(lru_cache, "_ATIME_SUFFIX", None)) == \
        (PROGRAM, LAST_USE)


def _tidy_programs(folder: Path, size: int) -> None:
    stamp = folder / ".tidied"  # programs written since it was last touched are read through once
    since = stamp.stat().st_mtime_ns if stamp.is_file() else 0
    kept = []
    for program in folder.glob("*" + PROGRAM):
        used = program.with_name(program.name.removesuffix(PROGRAM) + LAST_USE)
        if not used.is_file() or (program.stat().st_mtime_ns >= since and not _whole(program)):
            # Cut short: JAX writes a program before its last-use time, but a process that read it
            # meanwhile (and refused it) will have written that time all the same.
            program.unlink(missing_ok=True)
            used.unlink(missing_ok=True)
        elif program.is_file():
            kept.append((int.from_bytes(used.read_bytes(), "little"), program.stat().st_size, program, used))
    total = sum(bytes_ for _, bytes_, _, _ in kept)
    for _, bytes_, program, used in sorted(kept):
        if total <= size:
            break
        program.unlink(missing_ok=True)
        used.unlink(missing_ok=True)
        total -= bytes_
    stamp.touch()


def stored_programs_bytes(folder: Path) -> int:
    """The size of the programs kept in `folder` (what REPORTGEN_XLA_CACHE_MB bounds)."""
    total = 0
    for program in folder.glob("*" + PROGRAM):
        with contextlib.suppress(OSError):  # a build running meanwhile may delete it
            total += program.stat().st_size
    return total


def _whole(program: Path) -> bool:
    """Whether a stored program decompresses, as JAX will when it loads it."""
    from jax._src.compilation_cache import decompress_executable

    try:
        decompress_executable(program.read_bytes())
    except Exception:  # zlib.error, zstd's own errors: any refusal means JAX would refuse it too
        return False
    return True


def check_environment() -> None:
    """Stop before any training on a bad value of these switches. Under JAX, also when
    REPORTGEN_XLA_OPTIONS names an option this XLA does not have or gives one a value it does not
    take (one trivial program is compiled with them to find out). Other backends ignore them."""
    import keras

    from .run import cpu_threads

    cpu_threads()  # REPORTGEN_THREADS, read by every backend
    if keras.backend.backend() != "jax":
        return
    _switch(LOOP_ENV, LOOP_VALUES)
    _switch(AUTOTUNE_ENV, AUTOTUNE_LEVELS)
    program_cache_bytes()
    options = extra_options()
    if not options:
        return
    import jax

    lowered = jax.jit(lambda x: x + 1).lower(1.0)  # outside the try: a device that fails to start is not the options'
    try:
        lowered.compile(compiler_options=options)
    except RuntimeError as exc:  # XLA's own words say which option and why
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: XLA refused it: {exc}") from None


CONVOLUTIONS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D")


def _convolves(model: Any) -> bool:
    import keras

    kinds = tuple(getattr(keras.layers, name) for name in CONVOLUTIONS if hasattr(keras.layers, name))
    return any(isinstance(layer, kinds) for layer in model._flatten_layers(include_self=True))


def fit(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        batch_size: int, epochs: int, seed: int, watch: Any) -> tuple[dict[str, list[float]], np.ndarray]:
    """Train a compiled Keras model (JAX backend) on uint8 images scaled by 1/255 on the device.
    `watch` is a keras Callback (on_epoch_begin, on_train_batch_end, on_epoch_end; it may set
    model.stop_training). Returns the history, as `fit` would, and the last epoch's validation
    class probabilities."""
    import jax
    import jax.numpy as jnp
    import keras

    n = len(x_train)
    full = n // batch_size  # whole batches; a remainder is one short batch at the end
    short = n - full * batch_size
    chunk = max(1, math.ceil(full / PROGRESS_TICKS))
    train = (jax.device_put(x_train), jax.device_put(y_train.astype("int32")))
    xv_dev, yv_dev = jax.device_put(x_val), jax.device_put(y_val.astype("int32"))

    def scaled(images: Any) -> Any:
        return images.astype("float32") / 255.0  # as the NumPy path scales them

    # The data are arguments, not constants closed over: XLA would fold a constant into the program.
    def batch(data: Any, order: Any, start: Any, size: int) -> tuple[Any, Any]:
        index = jax.lax.dynamic_slice_in_dim(order, start, size)
        return scaled(jnp.take(data[0], index, axis=0)), jnp.take(data[1], index, axis=0)

    options = compiler_options(model)
    jit = partial(jax.jit, compiler_options=options or None)

    def one_step(state: Any, data: Any, order: Any, index: Any) -> tuple[Any, Any]:
        return model.train_step(state, batch(data, order, index * batch_size, batch_size))

    def looped(state: Any, data: Any, order: Any, first: Any, last: Any) -> tuple[Any, Any]:
        """Steps first..last-1 (first < last) in one call, looping on the device."""
        logs_shape = jax.eval_shape(one_step, state, data, order, first)[0]
        logs = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), logs_shape)
        return jax.lax.fori_loop(first, last, lambda i, carry: one_step(carry[1], data, order, i), (logs, state))

    in_loop = device_loop()
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
    model._symbolic_build(data_batch=(x_train[:batch_size].astype("float32") / 255.0, y_train[:batch_size]))
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
    Shared with tf_fit.py."""
    for key, value in logs.items():
        history.setdefault(key, []).append(value)
    watch.on_epoch_end(epoch, logs)
    return bool(model.stop_training)
