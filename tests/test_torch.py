"""Training under the PyTorch backend, where a classifier trains through Keras' own fit: it must
report what Keras would on the stored weights, train the short last batch, count a penalty in the
loss, give the same weights for the same seed, mark a run that blows up as diverged, and give a
--jobs build the results of a sequential one, recorded as PyTorch's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_project
from .test_jax import NETS, SECTION
from .test_speed import project, reportgen, stored

pytestmark = pytest.mark.slow

# 1000 training images in batches of 64: 15 whole batches and a short one of 40.
CHECK = r"""
import json, sys, tempfile
from pathlib import Path

import keras

from reportgen import data, models, run
from reportgen.spec import load_project

root = Path(sys.argv[1])
images = data.subset(data.load("mnist-sample"), 1000, 300)
out = {"backend": keras.backend.backend()}


class Steps(run.SilentReporter):
    def __init__(self):
        self.last = []

    def batch_end(self, step, logs):
        self.last.append(step)


for exp in load_project(root).experiments:
    steps = Steps()
    first, again = run.train(exp, images, root / "experiments", steps), run.train(exp, images, root / "experiments")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / run.WEIGHTS_FILE
        weights.write_bytes(first.files[run.WEIGHTS_FILE])
        model = models.build(exp, root / "experiments")
        model.load_weights(weights)
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        evaluated = model.evaluate(images.x_val / 255.0, images.y_val, batch_size=64, verbose=0, return_dict=True)
    out[exp.name] = {"result": first.result, "again": again.result["weights_sha256"],
                     "evaluated": {k: float(v) for k, v in evaluated.items()},
                     "grid": len(first.arrays.get("misclassified_images", [])), "steps": steps.last}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_project(tmp_path_factory.mktemp("torch"), {
        "experiments/1-torch.toml": SECTION, "experiments/1-torch.md": "Under PyTorch.\n",
        "experiments/nets.py": NETS})
    done = subprocess.run([sys.executable, "-c", CHECK, str(root)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", ["plain", "penalised", "dropout"])
def test_the_history_ends_with_what_keras_evaluates_on_the_stored_weights(trained: dict, name: str) -> None:
    assert trained["backend"] == "torch"
    result, evaluated = trained[name]["result"], trained[name]["evaluated"]
    assert result["backend"] == "torch" and result["status"] == "ok" and result["epochs_run"] == 2
    assert result["device"]["kind"] == "cpu" and result["device"]["backend"] == "torch"
    history = result["history"]
    assert history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"], abs=1e-6)
    assert history["val_loss"][-1] == pytest.approx(evaluated["loss"], rel=1e-4)
    wrong = round((1 - evaluated["accuracy"]) * 300)
    assert result["misclassified"]["count"] == wrong and result["misclassified"]["total"] == 300
    assert trained[name]["grid"] == min(wrong, 100)
    assert history["loss"][1] < history["loss"][0]
    # Each epoch trains 16 batches, the last a short one; Keras' fit reports every one.
    assert result["steps_trained"] == 32
    assert trained[name]["steps"] == list(range(1, 17)) * 2
    assert trained[name]["again"] == result["weights_sha256"]  # same seed, same weights


def test_the_penalty_is_part_of_the_validation_loss(trained: dict) -> None:
    plain, penalised = trained["plain"]["result"]["history"], trained["penalised"]["result"]["history"]
    assert penalised["val_loss"][-1] - plain["val_loss"][-1] > 0.05


def test_a_run_that_blows_up_under_pytorch_is_marked_diverged(trained: dict) -> None:
    result = trained["explodes"]["result"]
    assert result["status"] == "diverged" and result["diverged"]["epoch"] == 1
    assert result["epochs_run"] == 1


def test_jobs_under_pytorch_give_the_sequential_results_under_keys_of_their_own(tmp_path: Path) -> None:
    results = {}
    for jobs in ("1", "2"):
        root = project(tmp_path / f"jobs-{jobs}")
        done = reportgen(root, "--backend", "torch", "--jobs", jobs)
        assert done.returncode == 0, done.stdout + done.stderr
        results[jobs] = stored(root)
    assert sorted(results["1"]) == ["net-16", "net-24", "net-8"]
    assert results["2"] == results["1"]  # the same weights, curves and cache keys
    # The backend is part of each result's key: a TensorFlow build of the same project trains again.
    again = reportgen(root, "--backend", "tensorflow")
    assert again.returncode == 0 and "3 to train" in again.stdout, again.stdout
