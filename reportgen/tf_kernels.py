"""Adam under TensorFlow as one kernel per variable (`ResourceApplyAdam`), as tf.keras ran it; and
the L2 penalty as one kernel per weight (`L2Loss`).

Keras 3's Adam updates each variable with about ten separate ops (both moments, the bias
correction, the step). TensorFlow runs each as a graph node, and for the small dense models of a
report the nodes' overhead, not their arithmetic, is a fifth or more of a training step on a CPU:
an epoch of relu-200x100 on 60,000 images took 1.0-1.3 s with this kernel against 1.25-1.7 s with
Keras' ops (2 cores). The kernel computes the same update,

    m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
    var -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

so the weights differ from Keras' in the last bits of rounding only. AMSGrad and sparse gradients
keep Keras' own update.

Keras' L2 penalty, l2 * sum(w^2), is a square, a sum and a product, and its gradient a broadcast
and two more products: five passes over each kernel every step. TensorFlow's `L2Loss` computes
sum(w^2) / 2 in one pass, and its gradient is one more. On a (200,100) network with l2 = 1e-4 that
was 0.03 s of a 0.55-0.58 s epoch (2 cores). The penalty is the same number, the weights differ
in the last bits of rounding only. The layers keep Keras' L2 in their configuration; only the
weights' own regularizer, the one a training step calls, is swapped.
"""

from __future__ import annotations

from typing import Any

# This module is imported only under TensorFlow, when a run trains (models.optimizer, tf_fit, gan).
import keras  # noqa: TID253
import tensorflow as tf  # noqa: TID253


class FusedAdam(keras.optimizers.Adam):
    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            super().update_step(gradient, variable, learning_rate)
            return
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
            use_locking=False)


class FusedL2(keras.regularizers.Regularizer):
    """l2 * sum(w^2) as 2 * l2 * L2Loss(w)."""

    def __init__(self, l2: float):
        self.l2 = float(l2)

    def __call__(self, x: Any) -> Any:
        return tf.cast(2.0 * self.l2, x.dtype) * tf.nn.l2_loss(x)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


def fuse_penalties(*models: Any) -> None:
    """Give every weight whose penalty is exactly Keras' L2 the one-kernel form above."""
    for model in models:
        for variable in model.trainable_variables:
            if type(getattr(variable, "regularizer", None)) is keras.regularizers.L2:
                variable.regularizer = FusedL2(variable.regularizer.l2)
