"""The `gan` kind: a Dense generator and discriminator, trained with one compiled function per
chunk of steps. Part of the run stage (imports keras).

Both updates of a step (discriminator on real and generated images, then generator through the
discriminator) run inside one compiled call that loops over many batches, instead of two or three
`train_on_batch` calls per batch. The discriminator's update sees the real and the generated
images as one batch of twice the size, as the classic loop's `train_on_batch` on both does (one
dropout draw over both); on 2 CPU cores its larger matrix products made a step 4% shorter than two
calls of one batch each. Keras 3 has no backend-neutral way to apply two optimizers in a
compiled loop, so the loop is written once per backend (TensorFlow: tf.function over a tf.range
loop; JAX: jit over a scan of the stateless step; PyTorch: an eager loop); the models, losses and
optimizers are plain Keras, shared by all three.

Randomness comes from NumPy generators seeded by (seed, epoch): the batch order and the noise of
epoch e are the same whether or not the run was interrupted before it, so a resumed run continues
exactly where the checkpoint left it. The fixed noise batch that draws the sample grids has its own
generator, so every epoch's samples are comparable.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.files import write_atomic
from reportgen.project.dataset import Dataset
from reportgen.project.settings import Environment
from reportgen.project.spec import Experiment, GANSpec
from reportgen.train.machine import set_seeds
from reportgen.train.models import fresh_session, optimizer, precision, regularizer
from reportgen.train.outcome import Outcome, model_summary, provenance, weights_hash
from reportgen.train.result import GanResult
from reportgen.train.xla import compiler_options

MNIST_SHAPE = (28, 28)  # the images a GAN is built for when none are given (tests, benchmarks)
CHECKPOINT = "checkpoint.npz"
MAX_STEPS_PER_CALL = 64  # progress is reported between compiled calls


def build_generator(spec: GANSpec, shape: tuple[int, ...] = MNIST_SHAPE) -> Any:
    """Noise to images of `shape`, flattened (as the discriminator reads them)."""
    import keras

    layers: list[Any] = [keras.Input((spec.noise_dim,))]
    for width in spec.generator:
        layers += [keras.layers.Dense(width, kernel_regularizer=regularizer(spec)), _activation(spec)]
    layers += [keras.layers.Dense(math.prod(shape), kernel_regularizer=regularizer(spec)),
               keras.layers.Activation(spec.generator_output, dtype="float32")]
    return keras.Sequential(layers, name="generator")


def build_discriminator(spec: GANSpec, shape: tuple[int, ...] = MNIST_SHAPE) -> Any:
    import keras

    layers: list[Any] = [keras.Input((math.prod(shape),))]
    for i, width in enumerate(spec.discriminator):
        layers += [keras.layers.Dense(width, kernel_regularizer=regularizer(spec)), _activation(spec)]
        if spec.dropout:
            # An explicit seed keeps the dropout masks in Keras' own seed state, which checkpoints
            # save; unseeded dropout under PyTorch draws from torch's global generator instead.
            layers.append(keras.layers.Dropout(spec.dropout, seed=spec.seed * 1000 + i))
    layers += [keras.layers.Dense(1, kernel_regularizer=regularizer(spec)),
               keras.layers.Activation("sigmoid", dtype="float32")]
    return keras.Sequential(layers, name="discriminator")


def _activation(spec: GANSpec) -> Any:
    import keras

    if spec.activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=spec.leaky_slope)
    return keras.layers.Activation(spec.activation)


def steps_per_call(steps: int) -> int:
    """The largest divisor of an epoch's steps up to MAX_STEPS_PER_CALL, so every call has the same
    shape and compiles once; an epoch whose step count has no useful divisor runs in one call."""
    best = max(d for d in range(1, min(steps, MAX_STEPS_PER_CALL) + 1) if steps % d == 0)
    return best if best >= 8 or steps <= MAX_STEPS_PER_CALL else steps


class GanNets:
    """Generator, discriminator, their optimizers and the compiled chunk of training steps."""

    def __init__(self, spec: GANSpec, env: Environment | None = None, shape: tuple[int, ...] = MNIST_SHAPE):
        import keras

        self.spec = spec
        self.shape = tuple(shape)  # one image's
        self.env = env or Environment()  # JAX: the XLA options of its compiled programs
        self.backend = keras.backend.backend()
        with precision(spec.precision):
            self.generator = build_generator(spec, self.shape)
            self.discriminator = build_discriminator(spec, self.shape)
        self.g_opt = optimizer(spec)
        self.d_opt = optimizer(spec)
        self.g_opt.build(self.generator.trainable_variables)
        self.d_opt.build(self.discriminator.trainable_variables)
        self._chunk: Any = None
        self._state: Any = None  # JAX only: the variables' values, threaded through the compiled loop
        self._infer: Any = None  # JAX only: the generator's compiled inference (generate)

    # --- the variables, for checkpoints ---------------------------------------------------------

    def variable_groups(self) -> dict[str, list[Any]]:
        return {"generator": list(self.generator.variables),
                "discriminator": list(self.discriminator.variables),
                "g_opt": list(self.g_opt.variables), "d_opt": list(self.d_opt.variables)}

    def values(self) -> dict[str, np.ndarray]:
        import keras

        self.sync()
        return {f"{group}/{i}": keras.ops.convert_to_numpy(v.value)
                for group, variables in self.variable_groups().items() for i, v in enumerate(variables)}

    def restore(self, values: dict[str, np.ndarray]) -> None:
        for group, variables in self.variable_groups().items():
            for i, v in enumerate(variables):
                stored = values[f"{group}/{i}"]
                if tuple(stored.shape) != tuple(v.shape):
                    raise ValueError(f"{group} variable {v.path} has shape {v.shape}, checkpoint {stored.shape}")
                v.assign(stored)
        self._state = None

    def sync(self) -> None:
        """JAX keeps the live values outside the Keras variables while training; write them back."""
        if self._state is None:
            return
        g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = self._state
        for variables, values in ((self.generator.trainable_variables, g_tv),
                                  (self.generator.non_trainable_variables, g_ntv),
                                  (self.discriminator.trainable_variables, d_tv),
                                  (self.discriminator.non_trainable_variables, d_ntv),
                                  (self.g_opt.variables, g_ov), (self.d_opt.variables, d_ov)):
            for v, value in zip(variables, values, strict=True):
                v.assign(value)

    # --- training -------------------------------------------------------------------------------

    def run_steps(self, reals: np.ndarray, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
        """Train len(reals) steps (reals: steps x batch x 784, z1/z2: steps x batch x noise);
        return each step's [d_loss, g_loss, d_acc_real, d_acc_fake]."""
        import keras

        if self._chunk is None:
            self._chunk = {"tensorflow": self._compile_tf, "jax": self._compile_jax,
                           "torch": self._compile_torch}[self.backend]()
        return np.asarray(keras.ops.convert_to_numpy(self._chunk(reals, z1, z2)))

    def _d_objective(self, probs: Any, n_real: Any) -> tuple[Any, Any, Any]:
        """Discriminator loss on its outputs for a batch of n_real real images followed by one of
        generated images, as the classic loop computes it from one call on both (mean
        cross-entropy over both; real labels 1 - label_smoothing)."""
        from keras import ops

        d_out_real, d_out_fake = probs[:n_real], probs[n_real:]
        labels = ops.concatenate([ops.full(ops.shape(d_out_real), 1.0 - self.spec.label_smoothing),
                                  ops.zeros(ops.shape(d_out_fake))], axis=0)
        loss = _cross_entropy(labels, probs)
        acc_real = ops.mean(ops.cast(d_out_real > 0.5, "float32"))
        acc_fake = ops.mean(ops.cast(d_out_fake < 0.5, "float32"))
        return loss, acc_real, acc_fake

    def _g_objective(self, d_out: Any) -> Any:
        from keras import ops

        return _cross_entropy(ops.ones(ops.shape(d_out)), d_out)

    def _regularization(self, model: Any) -> Any:
        from keras import ops

        return ops.sum(ops.stack(model.losses)) if model.losses else 0.0

    def _compile_tf(self) -> Any:
        import tensorflow as tf
        from keras import ops

        from reportgen.train.tf_kernels import fuse_penalties, matmul_input_gradients

        G, D = self.generator, self.discriminator
        fuse_penalties(G, D)  # L2 as one kernel a weight

        def step(real: Any, z1: Any, z2: Any) -> Any:
            fake = G(z1, training=True)
            with tf.GradientTape() as tape:
                d_loss, acc_real, acc_fake = self._d_objective(D(tf.concat([real, fake], 0), training=True),
                                                               tf.shape(real)[0])
                total = d_loss + self._regularization(D)
            self.d_opt.apply(tape.gradient(total, D.trainable_variables), D.trainable_variables)
            with tf.GradientTape() as tape:
                g_loss = self._g_objective(D(G(z2, training=True), training=True))
                total = g_loss + self._regularization(G)
            self.g_opt.apply(tape.gradient(total, G.trainable_variables), G.trainable_variables)
            return ops.stack([d_loss, g_loss, acc_real, acc_fake])

        @tf.function(reduce_retracing=True)
        def chunk(reals: Any, z1: Any, z2: Any) -> Any:
            n = tf.shape(reals)[0]
            out = tf.TensorArray(tf.float32, size=n)
            for i in tf.range(n):
                out = out.write(i, step(reals[i], z1[i], z2[i]))
            return out.stack()

        def traced_with_faster_gradients(reals: Any, z1: Any, z2: Any) -> Any:
            with matmul_input_gradients():  # the larger layers' input gradients, when the step is traced
                return chunk(reals, z1, z2)

        return traced_with_faster_gradients

    def _compile_torch(self) -> Any:
        import torch
        from keras import ops

        G, D = self.generator, self.discriminator

        def grads(loss: Any, variables: list[Any]) -> list[Any]:
            return list(torch.autograd.grad(loss, [v.value for v in variables]))

        def chunk(reals: Any, z1: Any, z2: Any) -> Any:
            rows = []
            for real, a, b in zip(ops.convert_to_tensor(reals), ops.convert_to_tensor(z1),
                                  ops.convert_to_tensor(z2), strict=True):
                with torch.no_grad():
                    fake = G(a, training=True)
                out = D(ops.concatenate([real, fake]), training=True)
                d_loss, acc_real, acc_fake = self._d_objective(out, real.shape[0])
                self.d_opt.apply(grads(d_loss + self._regularization(D), D.trainable_variables),
                                 D.trainable_variables)
                g_loss = self._g_objective(D(G(b, training=True), training=True))
                self.g_opt.apply(grads(g_loss + self._regularization(G), G.trainable_variables),
                                 G.trainable_variables)
                rows.append(ops.stack([d_loss, g_loss, acc_real, acc_fake]).detach())
            return ops.stack(rows)

        return chunk

    def _compile_jax(self) -> Any:
        import jax
        from keras import ops

        G, D = self.generator, self.discriminator

        def penalty(losses: list[Any]) -> Any:
            return ops.sum(ops.stack(losses)) if losses else 0.0

        def d_loss_fn(d_tv: Any, d_ntv: Any, real: Any, fake: Any) -> Any:
            out, d_ntv, weight_losses = D.stateless_call(d_tv, d_ntv, ops.concatenate([real, fake]), training=True,
                                                         return_losses=True)
            loss, acc_real, acc_fake = self._d_objective(out, real.shape[0])
            return loss + penalty(weight_losses), (loss, acc_real, acc_fake, d_ntv)

        def g_loss_fn(g_tv: Any, g_ntv: Any, d_tv: Any, d_ntv: Any, z: Any) -> Any:
            fake, g_ntv, weight_losses = G.stateless_call(g_tv, g_ntv, z, training=True, return_losses=True)
            out, d_ntv = D.stateless_call(d_tv, d_ntv, fake, training=True)
            loss = self._g_objective(out)
            return loss + penalty(weight_losses), (loss, g_ntv, d_ntv)

        d_grad = jax.value_and_grad(d_loss_fn, has_aux=True)
        g_grad = jax.value_and_grad(g_loss_fn, has_aux=True)

        def body(state: Any, xs: Any) -> Any:
            g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = state
            real, a, b = xs
            fake, g_ntv = G.stateless_call(g_tv, g_ntv, a, training=True)
            (_, (d_loss, acc_real, acc_fake, d_ntv)), grads = d_grad(d_tv, d_ntv, real, jax.lax.stop_gradient(fake))
            d_tv, d_ov = self.d_opt.stateless_apply(d_ov, grads, d_tv)
            (_, (g_loss, g_ntv, d_ntv)), grads = g_grad(g_tv, g_ntv, d_tv, d_ntv, b)
            g_tv, g_ov = self.g_opt.stateless_apply(g_ov, grads, g_tv)
            return (g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov), ops.stack([d_loss, g_loss, acc_real, acc_fake])


        compiled = jax.jit(lambda state, xs: ops.scan(body, state, xs), donate_argnums=0,
                           compiler_options=compiler_options(G, D, env=self.env) or None)

        def chunk(reals: Any, z1: Any, z2: Any) -> Any:
            if self._state is None:
                self._state = tuple([v.value for v in variables] for variables in (
                    G.trainable_variables, G.non_trainable_variables, D.trainable_variables,
                    D.non_trainable_variables, self.g_opt.variables, self.d_opt.variables))
            self._state, rows = compiled(self._state, (reals, z1, z2))
            return rows

        return chunk

    def generate(self, noise: np.ndarray) -> np.ndarray:
        """Images (n x H x W [x C], uint8) from noise, with the generator in inference mode."""
        import keras

        self.sync()
        infer = self._inference()
        out = np.concatenate([keras.ops.convert_to_numpy(infer(noise[i:i + 1000])) for i in range(0, len(noise), 1000)])
        scaled = (out + 1.0) * 127.5 if self.spec.generator_output == "tanh" else out * 255.0
        return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8).reshape(-1, *self.shape)

    def _inference(self) -> Any:
        """The generator in inference mode, as one function of the noise. Under JAX, one compiled
        program: called eagerly, each layer's operations were compiled as programs of their own,
        and on an H100 each of the larger matrix products took 0.9-1.3 s to compile."""
        generator = self.generator
        if self.backend != "jax":
            return lambda z: generator(z, training=False)
        if self._infer is None:
            import jax


            self._infer = jax.jit(lambda tv, ntv, z: generator.stateless_call(tv, ntv, z, training=False)[0],
                                  compiler_options=compiler_options(generator, env=self.env) or None)
        compiled = self._infer
        trainable = [v.value for v in generator.trainable_variables]
        non_trainable = [v.value for v in generator.non_trainable_variables]
        return lambda z: compiled(trainable, non_trainable, z)


def _cross_entropy(labels: Any, probs: Any) -> Any:
    """Mean binary cross-entropy of probabilities, clipped as Keras clips them. Written out so a
    NaN passes through to the divergence check on every backend (PyTorch's own raises instead)."""
    from keras import ops

    p = ops.clip(probs, 1e-7, 1.0 - 1e-7)
    return -ops.mean(labels * ops.log(p) + (1.0 - labels) * ops.log(1.0 - p))


def scale_images(images: np.ndarray, output: str) -> np.ndarray:
    """Images (uint8, or floats 0..1) to the generator's output range, flattened."""
    x = images.reshape(len(images), -1).astype("float32")
    if images.dtype != np.uint8:
        return x * 2.0 - 1.0 if output == "tanh" else x
    return x / 127.5 - 1.0 if output == "tanh" else x / 255.0


def epoch_batches(x: np.ndarray, spec: GANSpec, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch e's shuffled real batches and two noise batches per step, from a generator seeded
    by (seed, e): the same whether or not the run was interrupted before it."""
    rng = np.random.default_rng([spec.seed, epoch])
    steps = len(x) // spec.batch_size
    order = rng.permutation(len(x))[: steps * spec.batch_size]
    reals = x[order].reshape(steps, spec.batch_size, x.shape[1])
    shape = (steps, spec.batch_size, spec.noise_dim)
    return reals, rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)


def fixed_noise(spec: GANSpec) -> np.ndarray:
    return np.random.default_rng([spec.seed, 2**31 - 1]).standard_normal((spec.samples, spec.noise_dim),
                                                                       dtype=np.float32)


# --- checkpoints: one file, rewritten atomically after every epoch --------------------------------


def snapshot(nets: GanNets, key: str, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """One finished epoch's checkpoint: the variables (weights and optimizer state) and the state
    as they are now, in arrays of their own, since training goes on in place (PyTorch) or in
    buffers it hands back to the device (JAX) while they are written."""
    meta = json.dumps({"key": key, **state}).encode()
    return {**{k: np.array(v, copy=True) for k, v in nets.values().items()},
            "meta": np.frombuffer(meta, dtype=np.uint8)}


def write_checkpoint(folder: Path, values: dict[str, np.ndarray], samples: np.ndarray) -> None:
    """Keep one finished epoch: its samples in a file of their own (so each epoch writes only its
    own), then the snapshot, atomically replacing the last one."""
    folder.mkdir(parents=True, exist_ok=True)
    epoch = json.loads(values["meta"].tobytes())["epoch"]
    write_atomic(folder / f"samples-{epoch}.npy", _npy(samples))
    buffer = io.BytesIO()
    np.savez(buffer, **values)  # type: ignore[arg-type]
    write_atomic(folder / CHECKPOINT, buffer.getvalue())


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_checkpoint(folder: Path, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray], list[np.ndarray]] | None:
    """(state, variables, samples per epoch) of the last finished epoch, or None when there is
    none; raises when the checkpoint is not this run's or is damaged."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    state = json.loads(arrays.pop("meta").tobytes())
    if state.get("key") != key:
        raise ValueError("checkpoint belongs to another configuration")
    samples = [np.load(folder / f"samples-{e}.npy", allow_pickle=False) for e in range(1, int(state["epoch"]) + 1)]
    return state, arrays, samples


def classic_log(history: dict[str, list[float]]) -> str:
    """The per-epoch text log older scripts parse: the value is the third token of each line."""
    lines = []
    for i, epoch in enumerate(history.get("epoch", [])):
        lines += [f"Epoch {epoch}", f"Discriminator loss: {history['d_loss'][i]:.6f}",
                  f"Generator loss: {history['g_loss'][i]:.6f}"]
    return "\n".join(lines) + "\n"


def train_gan(exp: Experiment, data: Dataset, reporter: Any, checkpoints: Path | None, key: str,
              env: Environment, programs: Path | None = None) -> Any:
    """Train a GAN run, resuming from its checkpoint when one exists; return an outcome.Outcome."""

    spec = exp.model
    assert isinstance(spec, GANSpec)
    started = time.perf_counter()
    flags = set_seeds(spec.seed, env, programs)
    fresh_session()
    if data.kind != "images":
        raise ValueError(f"a gan generates images; the data are feature vectors {data.input_shape}")
    nets = GanNets(spec, env, data.input_shape)
    x = scale_images(data.x_train, spec.generator_output)
    steps = len(x) // spec.batch_size
    if steps == 0:
        raise ValueError(f"{len(x)} training images make no batch of {spec.batch_size}")
    per_call = steps_per_call(steps)
    noise = fixed_noise(spec)

    history: dict[str, list[float]] = {k: [] for k in ("epoch", "d_loss", "g_loss", "d_acc_real", "d_acc_fake",
                                                        "seconds")}
    samples: list[np.ndarray] = []
    resumed: list[dict[str, Any]] = []
    diverged: dict[str, Any] | None = None
    first_epoch = 1
    if checkpoints is not None:
        try:
            found = load_checkpoint(checkpoints, key)
            if found is not None:
                state, variables, samples = found
                nets.restore(variables)
                history = state["history"]
                resumed = [*state.get("resumed", []), {"from_epoch": state["epoch"]}]
                first_epoch = state["epoch"] + 1
                reporter.note(f"  {exp.name}: resuming after epoch {state['epoch']} from its checkpoint")
        except Exception as exc:  # a damaged checkpoint (any way) must not block the run: start over
            reporter.note(f"  {exp.name}: checkpoint unusable ({exc}); starting over")
            shutil.rmtree(checkpoints, ignore_errors=True)
            set_seeds(spec.seed, env, programs)
            fresh_session()
            nets = GanNets(spec, env, data.input_shape)
            history = {k: [] for k in history}
            samples, resumed, first_epoch = [], [], 1

    # The host's share of an epoch (shuffling 60,000 images and drawing the noise, writing a 35 MB
    # checkpoint: 0.25-0.4 s on 2 CPU cores) runs beside training instead of between epochs: the
    # next epoch's batches are drawn, and the last checkpoint written, on threads of their own,
    # from the same seeds and from a copy of the variables.
    with ThreadPoolExecutor(1, thread_name_prefix="gan-batches") as ahead, \
            ThreadPoolExecutor(1, thread_name_prefix="gan-checkpoint") as writer:
        upcoming = ahead.submit(epoch_batches, x, spec, first_epoch) if first_epoch <= spec.epochs else None
        written: Future[None] | None = None
        for epoch in range(first_epoch, spec.epochs + 1):
            reporter.epoch_start(epoch, spec.epochs, steps)
            t0 = time.perf_counter()
            reals, z1, z2 = upcoming.result() if upcoming else epoch_batches(x, spec, epoch)
            if epoch < spec.epochs:
                upcoming = ahead.submit(epoch_batches, x, spec, epoch + 1)
            rows = []
            for start in range(0, steps, per_call):
                chunk = nets.run_steps(reals[start:start + per_call], z1[start:start + per_call],
                                       z2[start:start + per_call])
                rows.append(chunk)
                bad = ~np.isfinite(chunk[:, :2]).all(axis=1)
                if bad.any():
                    i = int(np.argmax(bad))
                    diverged = {"epoch": epoch, "batch": start + i + 1,
                                "loss": f"d_loss {chunk[i, 0]}, g_loss {chunk[i, 1]}"}
                    break
                reporter.batch_end(start + len(chunk), {"d_loss": float(chunk[-1, 0]),
                                                        "g_loss": float(chunk[-1, 1])})
            if diverged:
                break
            means = np.concatenate(rows).mean(axis=0)
            history["epoch"].append(epoch)
            for name, value in zip(("d_loss", "g_loss", "d_acc_real", "d_acc_fake"), means, strict=True):
                history[name].append(float(value))
            history["seconds"].append(round(time.perf_counter() - t0, 4))
            samples.append(nets.generate(noise))
            if checkpoints is not None:
                if written is not None:
                    written.result()  # one at a time, in order; a failed write stops the run here
                written = writer.submit(write_checkpoint, checkpoints, snapshot(
                    nets, key, {"epoch": epoch, "history": history, "resumed": resumed}), samples[-1])
            reporter.epoch_end(epoch, {k: history[k][-1] for k in ("d_loss", "g_loss", "d_acc_real",
                                                                   "d_acc_fake")})
        if written is not None:
            written.result()

    done = len(history["epoch"])
    nets.sync()
    g_summary, d_summary = model_summary(nets.generator), model_summary(nets.discriminator)
    result = GanResult.model_validate({
        "name": exp.name,
        "status": "diverged" if diverged else "ok",
        "diverged": diverged,
        "config": exp.config(),
        "summary": {"total": g_summary["total"] + d_summary["total"],
                    "trainable": g_summary["trainable"] + d_summary["trainable"],
                    "non_trainable": g_summary["non_trainable"] + d_summary["non_trainable"],
                    "layers": [], "generator": g_summary, "discriminator": d_summary},
        "history": history,
        "epochs_run": done,
        "steps_per_epoch": steps,
        "final": {k: history[k][-1] for k in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake") if history[k]},
        "resumed": resumed,
        "weights_sha256": weights_hash(nets.generator, nets.discriminator),
        **provenance(flags, started, data, spec.precision),
    })
    arrays = {"samples": np.stack(samples) if samples else np.zeros((0, *data.input_shape), np.uint8)}
    return Outcome(result=result, arrays=arrays, files={"output.txt": classic_log(history).encode()})

