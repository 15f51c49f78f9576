"""Same seeds, same numbers: two fresh processes train bit-identical models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reportgen.project.settings import Environment
from reportgen.train.machine import ONEDNN_ENV, cpu_threads, tensorflow_environment
from tests.conftest import write_project

pytestmark = pytest.mark.slow

FILES = {
    "experiments/1-nets.toml": """
        number = "1"
        title = "Nets"
        [[runs]]
        name = "dense"
        kind = "mlp"
        hidden_layers = [16]
        epochs = 2
        [[runs]]
        name = "conv"
        kind = "cnn"
        blocks = [{ type = "conv", filters = 4, kernel = 3 }, { type = "pool", size = 2 },
                  { type = "dropout", rate = 0.2 }]
        [[runs]]
        name = "gan"
        kind = "gan"
        generator = [16]
        discriminator = [16]
        noise_dim = 8
        samples = 32
        epochs = 2
    """,
    "experiments/1-nets.md": "Nets.\n",
}


def trained(root: Path) -> dict[str, dict]:
    """Run `reportgen run` in a fresh interpreter; return each stored result by run name."""
    command = [sys.executable, "-m", "reportgen", "run", "-C", str(root), "--limit-train", "320", "--limit-val", "64"]
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_ENV}  # the CLI's own choice, as a user gets it
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**env, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    results = {}
    entries = sorted((root / ".reportgen-cache" / "results").iterdir(), key=lambda e: e.stat().st_mtime)
    for entry in entries:  # oldest first: the latest result of a name wins
        result = json.loads((entry / "result.json").read_text())
        results[result["name"]] = result
    return results


def test_two_fresh_processes_with_the_same_seed_train_identical_weights_and_metrics(tmp_path):
    first = trained(write_project(tmp_path / "a", dict(FILES)))
    second = trained(write_project(tmp_path / "b", dict(FILES)))
    assert set(first) == {"dense", "conv", "gan"}
    for name in first:
        assert len(first[name]["weights_sha256"]) == 64
        assert first[name]["weights_sha256"] == second[name]["weights_sha256"], name
        assert first[name]["history"] == {**second[name]["history"], "seconds": first[name]["history"]["seconds"]}
        # tests/conftest.py sets seed 3; the thread pool is this machine's cores (or REPORTGEN_THREADS);
        # TensorFlow's oneDNN kernels are on, whatever this CPU's own default
        assert first[name]["determinism"] == {"seed": 3, "tf_op_determinism": True, "onednn": True,
                                              "cpu_threads": cpu_threads(Environment.read())}
    # A different seed gives different weights: the hash is not a constant.
    toml = tmp_path / "b" / "experiments" / "1-nets.toml"
    toml.write_text(toml.read_text().replace('name = "dense"', 'name = "dense"\nseed = 4'))
    reseeded = trained(tmp_path / "b")
    assert reseeded["dense"]["config"]["seed"] == 4
    assert reseeded["dense"]["weights_sha256"] != first["dense"]["weights_sha256"]


def test_tensorflow_gets_onednn_unless_the_user_chose_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ONEDNN_ENV, raising=False)
    tensorflow_environment()
    assert os.environ[ONEDNN_ENV] == "1"
    monkeypatch.setenv(ONEDNN_ENV, "0")  # someone who wants TensorFlow's Eigen kernels keeps them
    tensorflow_environment()
    assert os.environ[ONEDNN_ENV] == "0"
