"""Shared fixtures: throwaway projects written per test, and a CLI runner with a wide terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reportgen.train.machine import tensorflow_environment
from reportgen.train.result import ClassifierResult

# Set before keras can be imported anywhere in the test session, as the CLI sets them: the runs
# trained in this process and those of worker processes must use the same kernels.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
tensorflow_environment()

REPO = Path(__file__).resolve().parent.parent

PROJECT_TOML = """
title = "Tiny test report"
author = "Test Author"
data = "mnist-sample"

[defaults]
epochs = 1
batch_size = 64
seed = 3
"""


# A section of three small dense runs, for tests that train several experiments.
THREE_NETS = """
number = "1"
title = "Three nets"
[defaults]
kind = "mlp"
[[runs]]
name = "net-{hidden_layers}"
[runs.grid]
hidden_layers = [[8], [16], [24]]
"""


# A run whose loss overflows in its first steps: the build must mark it diverged, not fail.
EXPLODING_RUN = """
[[runs]]
name = "explodes"
kind = "mlp"
hidden_layers = [8]
optimizer = "sgd"
learning_rate = 1e30
"""


def build_or_fail(root: Path, args: list[str]) -> str:
    """`reportgen build` on a project through the CLI; fail the test unless it succeeds."""
    from typer.testing import CliRunner

    from reportgen.cli import app

    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["build", "-C", str(root), *args])
    assert result.exit_code == 0, result.output
    return result.output


def copy_project(built: Path, tmp_path: Path) -> Path:
    """A copy of a built project (cache and build included) that a test may change."""
    root = tmp_path / "project"
    shutil.copytree(built, root)
    return root


def read_manifest(root: Path) -> dict:
    return dict(json.loads((root / "build" / "manifest.json").read_text()))


def run_command(root: Path) -> list[str]:
    """`reportgen run` on a project's first 640/50 images, in a fresh interpreter."""
    import sys

    return [sys.executable, "-m", "reportgen", "run", "-C", str(root), "--limit-train", "640", "--limit-val", "50"]


def wait_for_checkpoint(root: Path, process: subprocess.Popen, seconds: float = 120) -> Path:
    """Wait until a GAN of the project has written its first checkpoint; fail if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        found = list((root / ".reportgen-cache" / "partial").glob("*/checkpoint.npz"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the GAN never wrote a checkpoint")


def classifier_result(name: str = "run", val_accuracy: float = 0.5, **changes: object) -> ClassifierResult:
    """A small, valid classifier result as training stores it: two epochs, one misclassified image."""
    history = {"epoch": [1, 2], "loss": [1.2, 0.9], "accuracy": [0.4, 0.6], "val_loss": [1.1, 1.0],
               "val_accuracy": [0.3, val_accuracy], "seconds": [0.5, 0.4]}
    fields = {
        "name": name, "status": "ok", "config": {"name": name, "kind": "mlp"},
        "summary": {"layers": [{"name": "dense", "type": "Dense", "output_shape": "(None, 10)", "params": 7850}],
                    "total": 7850, "trainable": 7850, "non_trainable": 0},
        "weights_sha256": "0" * 64, "history": history, "epochs_run": 2, "steps_trained": 8,
        "final": {k: v[-1] for k, v in history.items() if k not in ("epoch", "seconds")},
        "best": {"val_accuracy": max(0.3, val_accuracy), "epoch": 2 if val_accuracy >= 0.3 else 1},
        "misclassified": {"count": 1, "total": 2, "indices": [1], "true": [3], "predicted": [5],
                          "confidence": [0.9]},
        "device": {"kind": "cpu", "name": "CPU", "backend": "tensorflow"}, "precision": "float32",
        "backend": "tensorflow", "versions": {"keras": "3"}, "determinism": {"seed": 1}, "train_seconds": 0.9,
        "data": {"name": "mnist-sample", "fingerprint": "f" * 64}, **changes}
    return ClassifierResult.model_validate(fields)


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Create a project folder: `files` maps paths under experiments/ (or elsewhere) to text."""
    if "experiments/project.toml" not in files:
        files = {"experiments/project.toml": PROJECT_TOML, **files}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    def make(files: dict[str, str]) -> Path:
        return write_project(tmp_path / "project", files)

    return make


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite golden files from the current output instead of comparing.")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/golden/<name>; `pytest --update-golden` rewrites it."""

    def check(name: str, actual: str) -> None:
        path = REPO / "tests" / "golden" / name
        if request.config.getoption("--update-golden"):
            path.write_text(actual, encoding="utf-8")
            return
        assert path.is_file(), f"golden file {path} missing: run pytest --update-golden"
        assert actual == path.read_text(encoding="utf-8")

    return check


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 (pytest's hook)
    """Print the figures the hostile-input and fuzz tests measured, so every CI log carries them, and
    whatever the run left in the system temp folder (which fails it)."""
    left = config.stash.get(_LEFT, [])
    if left:
        terminalreporter.section("left in the system temp folder", red=True)
        terminalreporter.write_line(f"{len(left)} new entries in {_SYSTEM_TEMP}: " + ", ".join(left[:20]))
    from tests import test_faults
    from tests.project import test_spec_fuzz
    from tests.report import test_hostile

    for title, figures in (("hostile input", test_hostile.FIGURES),
                           ("broken experiment files", test_spec_fuzz.FIGURES), ("hard faults", test_faults.FIGURES)):
        if figures:
            terminalreporter.section(f"{title}: figures")
            for name, value in figures.items():
                terminalreporter.write_line(f"{name}: {value}")


# --- what a run of the suite may leave, and what the fast tier may load --------------------------------

_SYSTEM_TEMP = Path(tempfile.gettempdir())
_RUN_TEMP = Path(tempfile.mkdtemp(prefix="reportgen-tests-"))
_TEMP_BEFORE = {p.name for p in _SYSTEM_TEMP.iterdir()}
# Everything the suite writes to "the temp folder" lands in one folder of this run, removed when it
# ends: the tests' own files, Dask's scratch space, TensorFlow's generated code, worker task folders,
# in this process (tempfile.tempdir) and in every process it starts (TMPDIR).
os.environ["TMPDIR"] = str(_RUN_TEMP)
tempfile.tempdir = str(_RUN_TEMP)

BACKENDS = ("keras", "tensorflow", "jax", "torch")


class _NoBackend:
    """Refuses to import Keras or a backend: the fast tier (-m "not slow") runs without them, so a test
    that needs one must be marked slow."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in BACKENDS:
            raise ImportError(f"{name} imported in the fast tier (-m 'not slow'): mark the test slow")


def pytest_configure(config: pytest.Config) -> None:
    if config.option.markexpr.replace(" ", "") == "notslow":
        sys.meta_path.insert(0, _NoBackend())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_RUN_TEMP, ignore_errors=True)
    # Another run of the suite at the same time has a folder of its own there; this run's is gone.
    left = sorted(p.name for p in _SYSTEM_TEMP.iterdir()
                  if p.name not in _TEMP_BEFORE and not p.name.startswith("pytest-of-")
                  and (p.name == _RUN_TEMP.name or not p.name.startswith("reportgen-tests-")))
    if left:
        session.config.stash[_LEFT] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT = pytest.StashKey[list[str]]()
