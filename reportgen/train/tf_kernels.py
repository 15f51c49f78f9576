"""Kernels TensorFlow runs in place of Keras' ops: Adam as one kernel per variable
(`ResourceApplyAdam`), as tf.keras ran it; the L2 penalty as one kernel per weight (`L2Loss`); and
a large layer's input gradient as `BatchMatMulV2`.

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

A Dense layer's gradient with respect to its input is the incoming gradient times the kernel
transposed, which TensorFlow's gradient of `MatMul` computes as a `MatMul` with `transpose_b`. With
oneDNN's kernels that form ran at half the speed of the same product with the kernel stored
transposed: on 2 cores, (128 x 1024) times (784 x 1024) transposed took 2.1-2.2 ms against 1.1 ms.
`BatchMatMulV2` with `adj_y`, the same product, took 1.2 ms, but costs some 40 us more a call
whatever the size, which small layers do not win back ((128 x 100) times (200 x 100) transposed:
0.13 ms against 0.09 ms). So while `matmul_input_gradients()` is active, a training step traced
takes that form for float32 kernels of at least MIN_KERNEL_FOR_BATCHED elements (256 x 256:
0.16 ms against 0.19 ms) and TensorFlow's own gradient for every other product. The assignment's
GAN, whose larger layers all qualify, trained an epoch in 14.0-14.5 s against 15.3-16.1 s (2
cores). The product is the same; the weights differ in the last bits of rounding only. bfloat16
products showed no such gap and keep TensorFlow's gradient. TensorFlow offers no public way to
give an op another gradient for some graphs only, so the first use registers `_matmul_gradient` in
TensorFlow's gradient registry in place of its own, which it keeps and calls for every product it
does not take; where that registry is laid out otherwise, TensorFlow's own gradient serves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# This module is imported only under TensorFlow, when a run trains (models.optimizer, tf_loop, gan).
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


MIN_KERNEL_FOR_BATCHED = 256 * 256
_TRACING = threading.local()  # whether this thread is tracing a step that takes the batched form
_INSTALLED: list[Any] = []  # TensorFlow's own gradient of MatMul, once ours is registered in its place
_INSTALLING = threading.Lock()


@contextmanager
def matmul_input_gradients() -> Iterator[None]:
    """Steps traced inside this block (in this thread) compute large float32 input gradients of
    MatMul with BatchMatMulV2; everything traced elsewhere keeps TensorFlow's gradient."""
    if not _install():
        yield  # a TensorFlow whose gradient registry is laid out otherwise: its own gradient serves
        return
    before = getattr(_TRACING, "on", False)
    _TRACING.on = True
    try:
        yield
    finally:
        _TRACING.on = before


def _install() -> bool:
    """Register _matmul_gradient as MatMul's, keeping TensorFlow's for what it hands back."""
    with _INSTALLING:
        if not _INSTALLED:
            from tensorflow.python.framework import ops as tf_ops

            entry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", {}).get("MatMul")
            if not isinstance(entry, dict) or not callable(entry.get("type")):
                return False
            _INSTALLED.append(entry["type"])
            entry["type"] = _matmul_gradient
        return True


def _matmul_gradient(op: Any, grad: Any) -> Any:
    kernel = op.inputs[1]
    if (not getattr(_TRACING, "on", False) or op.get_attr("transpose_a") or op.get_attr("transpose_b")
            or kernel.dtype != tf.float32 or (kernel.shape.num_elements() or 0) < MIN_KERNEL_FOR_BATCHED):
        return _INSTALLED[0](op, grad)
    skip = getattr(op, "skip_input_indices", None) or ()  # inputs no gradient is asked for
    grad_input = None if 0 in skip else batched_input_gradient(grad, kernel)
    grad_kernel = None if 1 in skip else tf.raw_ops.MatMul(a=op.inputs[0], b=grad, transpose_a=True, grad_b=True)
    return grad_input, grad_kernel


def batched_input_gradient(grad: Any, kernel: Any) -> Any:
    """grad times kernel transposed, as BatchMatMulV2 computes it."""
    return tf.raw_ops.BatchMatMulV2(x=grad, y=kernel, adj_y=True)
