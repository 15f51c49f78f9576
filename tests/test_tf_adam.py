"""Adam under TensorFlow runs as one fused kernel per variable; it must take Keras' Adam steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reportgen import models
from reportgen.spec import GANSpec, MLPSpec

RNG = np.random.default_rng(11)
X = RNG.normal(size=(96, 20)).astype("float32")
Y = RNG.integers(0, 3, 96)


def fitted(optimizer: Any) -> list[np.ndarray]:
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", steps_per_execution=3)
    model.fit(X, Y, batch_size=16, epochs=4, shuffle=False, verbose=0)  # 24 steps
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("settings", [{}, {"learning_rate": 0.05, "beta_1": 0.5}, {"weight_decay": 0.01},
                                      {"amsgrad": True}])
def test_the_fused_kernel_takes_the_steps_keras_adam_takes(settings: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras
    import tensorflow as tf

    from reportgen.tf_adam import FusedAdam

    kernel, calls = tf.raw_ops.ResourceApplyAdam, []

    def counted(**kwargs: object) -> object:
        calls.append(kwargs)
        return kernel(**kwargs)

    monkeypatch.setattr(tf.raw_ops, "ResourceApplyAdam", counted)
    ours, theirs = fitted(FusedAdam(**settings)), fitted(keras.optimizers.Adam(**settings))
    # One kernel per variable (4) each time the step is traced; AMSGrad keeps Keras' ops.
    if settings.get("amsgrad"):
        assert not calls
    else:
        assert calls and len(calls) % 4 == 0
    start = fitted(keras.optimizers.SGD(learning_rate=0.0))
    for mine, keras_adam, initial in zip(ours, theirs, start, strict=True):
        np.testing.assert_allclose(mine, keras_adam, rtol=1e-4, atol=1e-5)  # rounding, 24 steps of ~1e-3
        assert np.abs(mine - initial).max() > 1e-3  # the weights did move


def test_runs_that_ask_for_adam_under_tensorflow_get_the_fused_kernel() -> None:
    import keras

    from reportgen.tf_adam import FusedAdam

    assert keras.backend.backend() == "tensorflow"
    assert isinstance(models.optimizer(MLPSpec(kind="mlp", hidden_layers=[4])), FusedAdam)
    gan = models.optimizer(GANSpec(kind="gan"))
    assert isinstance(gan, FusedAdam) and gan.beta_1 == GANSpec(kind="gan").beta_1
    assert not isinstance(models.optimizer(MLPSpec(kind="mlp", hidden_layers=[4], optimizer="sgd")),
                          FusedAdam)
    # The benchmark's baseline asks for Keras' own class, as a notebook has it.
    plain = models.optimizer(MLPSpec(kind="mlp", hidden_layers=[4]), fused=False)
    assert type(plain) is keras.optimizers.Adam
