"""Keras models from validated specs: the kinds' layers, regularizers, optimizers and precision policy."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reportgen.errors import RunError
from reportgen.project.spec import (
    OPTIMIZERS,
    TAKES,
    BatchNormBlock,
    CNNSpec,
    ConvBlock,
    CosineSchedule,
    CustomSpec,
    DropoutBlock,
    Experiment,
    ExponentialSchedule,
    GANSpec,
    MLPSpec,
    PoolBlock,
    StepSchedule,
    builder_path,
)


def regularizer(spec: MLPSpec | GANSpec, plain: bool = False) -> Any:
    """The kernels' penalty; none at strength 0, which adds nothing to the loss or the gradients of
    finite weights and would cost each training step passes over every kernel. `plain` keeps it
    as configured (the benchmark's baseline, as a notebook has it)."""
    import keras

    if not spec.strength and not plain:
        return None
    if spec.regularizer == "l1":
        return keras.regularizers.L1(spec.strength)
    if spec.regularizer == "l2":
        return keras.regularizers.L2(spec.strength)
    return None


def build(exp: Experiment, experiments_dir: Path, *, shape: tuple[int, ...], classes: int,
          plain: bool = False) -> Any:
    """A fresh, uncompiled keras.Model for one experiment, its layers in the experiment's precision,
    for inputs of `shape` (one example's: (H, W), (H, W, C) or (D,)) and `classes` outputs.
    Layer names restart at dense, dense_1... `plain`: see regularizer."""
    fresh_session()
    with precision(exp.model.precision):
        return _build(exp, experiments_dir, plain, tuple(shape), classes)


_FROZEN: list[bool] = []  # not empty once this process has frozen what it had before its first model


def fresh_session() -> None:
    """Keras' clear_session before each model: layer names and the dtype policy reset (set the
    policy after), and a full garbage collection, which frees the last model's reference cycles
    (its variables, optimizer slots and traced graphs) before the next one is built. Everything
    alive before this process's first model (TensorFlow's and Keras' modules: 0.2 s of scanning,
    a twentieth of a small dense run on 2 cores) is frozen out of later collections first."""
    import keras

    if not _FROZEN:
        gc.freeze()
        _FROZEN.append(True)
    keras.backend.clear_session()


def _build(exp: Experiment, experiments_dir: Path, plain: bool, shape: tuple[int, ...], classes: int) -> Any:
    import keras

    spec = exp.model
    if isinstance(spec, MLPSpec):
        return keras.Sequential([keras.Input(shape), *_mlp_layers(spec, plain, classes)])
    if isinstance(spec, CNNSpec):
        if len(shape) not in (2, 3):
            raise RunError(exp.name, f"a cnn needs images, (H, W) or (H, W, C); the data are feature vectors {shape}")
        layers = [keras.Input(shape)]
        if len(shape) == 2:  # greyscale images without a channel axis
            layers.append(keras.layers.Reshape((*shape, 1)))
        for block in spec.blocks:
            if isinstance(block, ConvBlock):
                layers += [keras.layers.Conv2D(block.filters, block.kernel, padding=block.padding),
                           keras.layers.Activation(block.activation)]
            elif isinstance(block, PoolBlock):
                layers.append(keras.layers.MaxPooling2D(block.size))
            elif isinstance(block, DropoutBlock):
                layers.append(keras.layers.Dropout(block.rate))
            elif isinstance(block, BatchNormBlock):
                layers.append(keras.layers.BatchNormalization())
        layers += [keras.layers.Flatten(), keras.layers.Dense(classes),
                   keras.layers.Activation("softmax", dtype="float32")]
        return keras.Sequential(layers)
    if isinstance(spec, CustomSpec):
        function = load_builder(spec.builder, experiments_dir)
        # A builder that names `input_shape` or `classes` among its parameters gets the data's.
        takes = inspect.signature(function).parameters
        given = {k: v for k, v in (("input_shape", shape), ("classes", classes))
                 if k in takes and k not in spec.params}
        try:
            model = function(**spec.params, **given)
        except Exception as exc:
            raise RunError(exp.name, f"builder {spec.builder} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, keras.Model):
            raise RunError(exp.name, f"builder {spec.builder} returned {type(model).__name__}, "
                           "expected a keras.Model")
        return model
    raise AssertionError(f"unhandled model kind {spec!r}")


def _mlp_layers(spec: MLPSpec, plain: bool, classes: int) -> list[Any]:
    """A dense network's layers after its input, unbuilt. Each Dense layer's initializer draws its
    seed from Python's generator as it is made, so the same seed gives the same weights only when
    the layers are made in this order."""
    import keras

    layers: list[Any] = [keras.layers.Flatten()]
    for i, width in enumerate(spec.hidden_layers):
        # A separate Activation layer after each Dense, as the assignment's summaries show.
        layers.append(keras.layers.Dense(width, kernel_regularizer=regularizer(spec, plain)))
        if spec.batch_norm:
            layers.append(keras.layers.BatchNormalization())
        layers.append(keras.layers.Activation(spec.activation))
        if spec.dropout_after(i):
            layers.append(keras.layers.Dropout(spec.dropout_after(i), seed=spec.seed * 1000 + i))
    return [*layers, keras.layers.Dense(classes), keras.layers.Activation("softmax", dtype="float32")]


def initial_weights(exp: Experiment, *, shape: tuple[int, ...], classes: int) -> list[Any]:
    """The initial weights `build` gives a dense network (without batch normalization) under the
    seeds as they stand, in get_weights' order, without building the model: its Dense layers made
    in build's order and built on their own, a sixth of the time (2 cores). train_repeats checks
    them against a model `build` made, and builds every model where they differ."""
    import keras

    spec = exp.model
    assert isinstance(spec, MLPSpec) and not spec.batch_norm
    weights: list[Any] = []
    width = math.prod(shape)
    with precision(spec.precision):
        for layer in _mlp_layers(spec, False, classes):
            if isinstance(layer, keras.layers.Dense):
                layer.build((None, width))
                weights += layer.get_weights()
                width = layer.units
    return weights


@contextmanager
def precision(policy: str) -> Iterator[None]:
    """Layers built inside compute in `policy`: "float32", or "mixed_bfloat16" (bfloat16 matmuls
    and activations, float32 weights). The output activations above are float32 under either, so
    softmax, sigmoid and the losses keep full precision. The global policy is restored after."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def load_builder(builder: str, experiments_dir: Path) -> Any:
    """Import `module:function` from the project's experiments folder (project code, run as such)."""
    module_name, function_name = builder.split(":")
    path = builder_path(builder, experiments_dir)
    if not path.is_file():
        raise RunError(builder, f"builder module not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"reportgen_project_{module_name}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RunError(builder, f"{path} defines no function {function_name!r}")
    return function


# Keras 3's defaults, where a schedule needs the starting rate (the run gives none).
DEFAULT_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3, "nadam": 1e-3}


def optimizer(spec: MLPSpec | CNNSpec | CustomSpec | GANSpec, fused: bool = True,
              steps_per_epoch: int | None = None) -> Any:
    """The run's optimizer with its settings (momentum, betas, epsilon, weight decay, clipnorm)
    and learning-rate schedule; Adam under TensorFlow as one fused kernel per variable unless
    `fused` is False (the benchmark's baseline is Keras' own class, as a notebook has it).
    A schedule counts in epochs of `steps_per_epoch` steps."""
    import keras

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
               "nadam": keras.optimizers.Nadam}
    kwargs: dict[str, Any] = {} if spec.learning_rate is None else {"learning_rate": spec.learning_rate}
    for key in ("momentum", "beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm"):
        value = getattr(spec, key)
        if value is not None and spec.optimizer in TAKES.get(key, OPTIMIZERS):  # a gan's beta_1 is for Adam
            kwargs[key] = value
    if spec.nesterov:
        kwargs["nesterov"] = True
    if spec.schedule is not None:
        kwargs["learning_rate"] = schedule(spec, steps_per_epoch or 1)
    if fused and spec.optimizer == "adam" and keras.backend.backend() == "tensorflow":
        from reportgen.train.tf_kernels import FusedAdam  # the same update in one TensorFlow kernel per variable

        return FusedAdam(**kwargs)
    return classes[spec.optimizer](**kwargs)


def schedule(spec: MLPSpec | CNNSpec | CustomSpec | GANSpec, steps_per_epoch: int) -> Any:
    """The run's learning-rate schedule as Keras' schedule objects, counted in optimizer steps."""
    import keras

    start = spec.learning_rate if spec.learning_rate is not None else DEFAULT_RATES[spec.optimizer]
    plan = spec.schedule
    if isinstance(plan, StepSchedule):
        boundaries = [steps_per_epoch * plan.every * k for k in range(1, spec.epochs // plan.every + 1)]
        values = [start * plan.factor ** k for k in range(len(boundaries) + 1)]
        if not boundaries:  # the run ends before the first step down
            return start
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if isinstance(plan, ExponentialSchedule):
        return keras.optimizers.schedules.ExponentialDecay(start, decay_steps=steps_per_epoch, decay_rate=plan.factor)
    if isinstance(plan, CosineSchedule):
        return keras.optimizers.schedules.CosineDecay(start, decay_steps=steps_per_epoch * spec.epochs,
                                                      alpha=plan.final)
    raise AssertionError(f"unhandled schedule {plan!r}")
