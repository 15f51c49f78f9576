"""The gan kind: recorded losses and images, the classic log, resuming after an interruption,
divergence, and mode collapse measured on images of known composition."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.project.data import load
from reportgen.project.dataset import subset
from reportgen.project.spec import Experiment, GANSpec
from reportgen.train.outcome import SilentReporter
from reportgen.train.run import train

pytestmark = pytest.mark.slow

TINY = {"kind": "gan", "generator": [32], "discriminator": [32], "noise_dim": 16, "batch_size": 64,
        "epochs": 3, "samples": 64, "seed": 5}


@pytest.fixture(scope="module")
def data():
    return subset(load("mnist-sample", None), 384, 100)  # 6 steps of 64 an epoch


def gan(**settings) -> Experiment:
    from pathlib import Path

    return Experiment(name="g", section="2", model=GANSpec(**{**TINY, **settings}), data="mnist-sample",
                      source=Path("g.toml"))


class StopAt(SilentReporter):
    """Ctrl-C as the given epoch starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.notes: list[str] = []

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_each_epoch_records_both_losses_accuracies_time_and_fixed_noise_samples(data, tmp_path):
    outcome = train(gan(), data, tmp_path, checkpoints=tmp_path / "ck", key="k")
    result, history = outcome.result, outcome.result.history
    assert result.status == "ok" and result.steps_per_epoch == 6 and history["epoch"] == [1, 2, 3]
    for name in ("d_loss", "g_loss"):
        assert len(history[name]) == 3 and all(0 < v < 20 for v in history[name])
    for name in ("d_acc_real", "d_acc_fake"):
        assert all(0 <= v <= 1 for v in history[name])
    assert len(history["seconds"]) == 3 and all(s > 0 for s in history["seconds"])
    samples = outcome.arrays["samples"]
    assert samples.shape == (3, 64, 28, 28) and samples.dtype == np.uint8
    assert not np.array_equal(samples[0], samples[2])  # the generator changed between epochs
    # Generator: 16*32 + 32 and 32*784 + 784; discriminator: 784*32 + 32 and 32 + 1.
    assert result.summary.generator.total == 544 + 25_872
    assert result.summary.discriminator.total == 25_120 + 33
    # The classic log: value as the third token of each Discriminator/Generator line.
    lines = outcome.files["output.txt"].decode().splitlines()
    d = [float(line.split()[2]) for line in lines if line.startswith("Discriminator")]
    g = [float(line.split()[2]) for line in lines if line.startswith("Generator")]
    assert d == pytest.approx(history["d_loss"], abs=1e-6) and g == pytest.approx(history["g_loss"], abs=1e-6)


def test_an_interrupted_run_resumes_after_its_last_epoch_and_ends_as_if_never_stopped(data, tmp_path):
    straight = train(gan(), data, tmp_path, checkpoints=tmp_path / "a", key="k")
    with pytest.raises(KeyboardInterrupt):
        train(gan(), data, tmp_path, StopAt(3), checkpoints=tmp_path / "b", key="k")
    assert (tmp_path / "b" / "checkpoint.npz").is_file()
    reporter = StopAt(0)
    resumed = train(gan(), data, tmp_path, reporter, checkpoints=tmp_path / "b", key="k")
    assert [r.from_epoch for r in resumed.result.resumed] == [2]
    assert reporter.notes == ["  g: resuming after epoch 2 from its checkpoint"]
    assert resumed.result.history["epoch"] == [1, 2, 3]
    for name in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"):
        assert resumed.result.history[name] == straight.result.history[name]
    np.testing.assert_array_equal(resumed.arrays["samples"], straight.arrays["samples"])


def test_a_checkpoint_of_another_configuration_is_never_resumed(data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(gan(), data, tmp_path, StopAt(2), checkpoints=tmp_path / "c", key="old-key")
    reporter = StopAt(0)
    outcome = train(gan(epochs=2), data, tmp_path, reporter, checkpoints=tmp_path / "c", key="new-key")
    assert outcome.result.resumed == [] and outcome.result.history["epoch"] == [1, 2]
    assert "checkpoint unusable (checkpoint belongs to another configuration)" in reporter.notes[0]


def test_losses_that_become_nan_stop_the_run_at_that_epoch(data, tmp_path):
    outcome = train(gan(optimizer="sgd", learning_rate=1e30), data, tmp_path, checkpoints=None, key="k")
    result = outcome.result
    assert result.status == "diverged" and result.diverged.epoch == 1
    assert result.epochs_run == 0 and outcome.arrays["samples"].shape[0] == 0
    assert "nan" in result.diverged.loss.lower() or "inf" in result.diverged.loss.lower()


def test_steps_per_call_divides_the_epoch():
    from reportgen.train.gan import steps_per_call

    assert steps_per_call(468) == 52  # full MNIST at batch 128: nine equal compiled calls
    assert steps_per_call(31) == 31 and steps_per_call(6) == 6
    assert steps_per_call(937) == 937  # a prime: one call per epoch rather than 937 tiny ones


def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(data, tmp_path):
    folder = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        train(gan(), data, tmp_path, StopAt(3), checkpoints=folder, key="k")
    (folder / "checkpoint.npz").write_bytes(b"PK\x03\x04 not a zip any more")
    reporter = StopAt(0)
    outcome = train(gan(), data, tmp_path, reporter, checkpoints=folder, key="k")
    assert reporter.notes[0].startswith("  g: checkpoint unusable (") and reporter.notes[0].endswith("starting over")
    assert outcome.result.resumed == [] and outcome.result.history["epoch"] == [1, 2, 3]
    straight = train(gan(), data, tmp_path, checkpoints=None, key="k")
    assert outcome.result.history["d_loss"] == straight.result.history["d_loss"]


def test_an_l2_gan_trains_under_tensorflow_as_with_keras_own_penalty(data, tmp_path, monkeypatch):
    """The L2 penalty of every kernel of both networks runs as one kernel a weight, and training
    follows the same path as with Keras' own penalty (the recorded losses leave the penalty out)."""
    import keras

    from reportgen.train import tf_kernels

    assert keras.backend.backend() == "tensorflow"
    fuse, seen = tf_kernels.fuse_penalties, []

    def watched(*nets):
        fuse(*nets)
        seen.extend(type(v.regularizer).__name__ for net in nets for v in net.trainable_variables if v.regularizer)

    monkeypatch.setattr(tf_kernels, "fuse_penalties", watched)
    fused = train(gan(regularizer="l2", strength=0.01, epochs=2), data, tmp_path).result.history
    assert seen == ["FusedL2"] * 4  # two kernels in each network
    monkeypatch.setattr(tf_kernels, "fuse_penalties", lambda *nets: None)
    plain = train(gan(regularizer="l2", strength=0.01, epochs=2), data, tmp_path).result.history
    unpenalised = train(gan(epochs=2), data, tmp_path).result.history
    for name in ("d_loss", "g_loss"):
        assert fused[name] == pytest.approx(plain[name], rel=1e-5)
    assert fused["d_loss"] != pytest.approx(unpenalised["d_loss"], rel=1e-3)  # the penalty changed training


def test_the_larger_layers_of_both_networks_take_the_batched_input_gradient(data, tmp_path, monkeypatch):
    from reportgen.train import tf_kernels

    batched, kernels = tf_kernels.batched_input_gradient, []

    def watched(grad, kernel):
        kernels.append(tuple(kernel.shape))
        return batched(grad, kernel)

    monkeypatch.setattr(tf_kernels, "batched_input_gradient", watched)
    wide = {"generator": [256, 256], "discriminator": [256], "epochs": 2}
    faster = train(gan(**wide), data, tmp_path).result.history
    # Generator 16 -> 256 -> 256 -> 784, discriminator 784 -> 256 -> 1: the generator's update takes
    # the gradient through the discriminator's first kernel and its own two larger ones; the
    # discriminator's update needs no gradient for its images, and 16 x 256 and 256 x 1 are small.
    assert sorted(kernels) == [(256, 256), (256, 784), (784, 256)]
    monkeypatch.setattr(tf_kernels, "MIN_KERNEL_FOR_BATCHED", 10**9)
    plain = train(gan(**wide), data, tmp_path).result.history
    assert sorted(kernels) == [(256, 256), (256, 784), (784, 256)]
    for name in ("d_loss", "g_loss"):
        assert faster[name] == pytest.approx(plain[name], rel=1e-4)


STEPS_UNDER = r"""
import json, sys
from pathlib import Path

import keras
import numpy as np

from reportgen.project import data
from reportgen.train import gan
from reportgen.train.machine import set_seeds
from reportgen.project.settings import Environment
from reportgen.project.spec import GANSpec

spec = GANSpec(**json.loads(sys.argv[1]))
set_seeds(spec.seed, Environment())
nets = gan.GanNets(spec)
start, end = Path(sys.argv[2]), Path(sys.argv[3])
if start.exists():
    nets.restore(dict(np.load(start)))
else:
    np.savez(start, **nets.values())
images = gan.scale_images(data.load("mnist-sample").x_train[:160], spec.generator_output)
losses = nets.run_steps(*gan.epoch_batches(images, spec, 1))
np.savez(end, **nets.values())
print(json.dumps({"backend": keras.backend.backend(), "losses": losses.tolist()}))
"""


def test_every_backend_trains_the_same_steps_from_the_same_weights(tmp_path):
    """The training step is written once per backend; from the same weights and batches, the three
    must give the same losses and weights. Without dropout (each backend draws its own masks), with
    label smoothing, an L2 penalty, and layers large enough for TensorFlow's batched gradients."""
    import json
    import os
    import subprocess
    import sys

    settings = {**TINY, "generator": [256, 300], "discriminator": [300, 256], "batch_size": 32, "dropout": 0.0,
                "label_smoothing": 0.1, "regularizer": "l2", "strength": 0.01}
    start, losses, weights = tmp_path / "start.npz", {}, {}
    for backend in ("tensorflow", "jax", "torch"):  # TensorFlow first: it draws the starting weights
        done = subprocess.run([sys.executable, "-c", STEPS_UNDER, json.dumps(settings), str(start),
                               str(tmp_path / f"{backend}.npz")], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": backend})
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["backend"] == backend
        losses[backend] = np.array(out["losses"])
        weights[backend] = dict(np.load(tmp_path / f"{backend}.npz"))
    assert losses["tensorflow"].shape == (5, 4)  # 160 images, 5 steps of 32: d_loss, g_loss, both accuracies
    assert len({round(float(d), 3) for d in losses["tensorflow"][:, 0]}) == 5  # training moved the losses
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(losses[backend], losses["tensorflow"], rtol=1e-5, atol=1e-6)
        assert weights[backend].keys() == weights["tensorflow"].keys()
        for name, value in weights["tensorflow"].items():
            np.testing.assert_allclose(weights[backend][name], value, rtol=1e-4, atol=1e-5, err_msg=name)
