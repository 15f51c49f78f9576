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

from tests.conftest import write_project

from .test_jax import CHECK, NETS, SECTION, assert_keras_would_report_it
from .test_speed import project, reportgen, stored

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_project(tmp_path_factory.mktemp("torch"), {
        "experiments/1-torch.toml": SECTION, "experiments/1-torch.md": "Under PyTorch.\n",
        "experiments/nets.py": NETS})
    # The JAX tests' script: it trains each run twice (and once more with a JAX switch PyTorch
    # ignores), then evaluates the stored weights with Keras.
    done = subprocess.run([sys.executable, "-c", CHECK, str(root)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", ["plain", "penalised", "dropout"])
def test_the_history_ends_with_what_keras_evaluates_on_the_stored_weights(trained: dict, name: str) -> None:
    # Keras' fit reports every batch.
    assert_keras_would_report_it(trained, name, "torch", list(range(1, 17)) * 2)


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
