"""Ctrl-C in the middle of a build: exit 130, nothing half-stored, locks released, and the CLI says
what finished, what was cut short and what never started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_command, wait_for_checkpoint

pytestmark = pytest.mark.slow

# A run that finishes at once, a GAN that would train for minutes, and one that waits its turn.
RUNS = {
    "experiments/a.toml": """
        number = "1"
        title = "Runs"
        [[runs]]
        name = "quick-dense"
        kind = "mlp"
        hidden_layers = [8]
        [[runs]]
        name = "long-gan"
        kind = "gan"
        generator = [16]
        discriminator = [16]
        noise_dim = 8
        samples = 16
        epochs = 500
        [[runs]]
        name = "never-started"
        kind = "mlp"
        hidden_layers = [4]
    """,
    "experiments/a.md": "Runs.\n",
}


def ctrl_c_delivered() -> None:
    """In the build's process, before Python starts: Ctrl-C handled, even when these tests run in
    the background of a shell, whose jobs inherit SIGINT ignored (and Python then keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(root: Path, *options: str) -> subprocess.Popen:
    """`reportgen run` on the project in a process of its own, its output collected."""
    return subprocess.Popen([*run_command(root), *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"}, preexec_fn=ctrl_c_delivered)


def ctrl_c(process: subprocess.Popen) -> str:
    """Ctrl-C once the GAN has started training; its output, after checking it exited with 130."""
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    return output


def test_ctrl_c_mid_training_reports_what_finished_and_keeps_the_checkpoint(make_project):
    root = make_project(RUNS)
    process = start(root)
    cache = root / ".reportgen-cache"
    wait_for_checkpoint(root, process)
    output = ctrl_c(process)
    assert "Interrupted. Nothing half-written was stored." in output
    assert "finished and cached: quick-dense" in output
    assert "cut short: long-gan (its checkpoint is kept and the next build resumes it)" in output
    assert "not started: never-started" in output
    assert list((cache / "locks").iterdir()) == []  # the lock of the interrupted run is released
    assert len(list((cache / "results").iterdir())) == 1  # only the finished run was stored
    assert list((cache / "tmp").iterdir()) == []


def test_ctrl_c_under_force_counts_only_what_this_build_trained_as_finished(make_project):
    root = make_project(RUNS)
    done = subprocess.run([*run_command(root), "--only", "quick-dense", "--only", "never-started"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    cache = root / ".reportgen-cache"
    earlier = {p.parent.name for p in (cache / "results").glob("*/result.json")}
    process = start(root, "--force")
    wait_for_checkpoint(root, process)
    output = ctrl_c(process)
    # never-started keeps its earlier result, but this build did not train it
    assert "finished and cached: quick-dense\n" in output
    assert "cut short: long-gan (its checkpoint is kept and the next build resumes it)" in output
    assert "not started: never-started" in output
    assert earlier <= {p.parent.name for p in (cache / "results").glob("*/result.json")}  # nothing lost


def test_ctrl_c_with_jobs_stops_the_workers_and_keeps_what_finished(make_project):
    root = make_project(RUNS)
    process = start(root, "--jobs", "2")
    checkpoint = wait_for_checkpoint(root, process)
    workers = [int(p) for t in Path(f"/proc/{process.pid}/task").iterdir()
               for p in (t / "children").read_text().split()]
    assert workers, "the build started no worker processes"
    output = ctrl_c(process)
    assert "Interrupted. Nothing half-written was stored." in output
    # Both may still be running when Ctrl-C lands (the dense one waits for its worker to start).
    cut = next(line for line in output.splitlines() if line.strip().startswith("cut short:"))
    assert "long-gan" in cut and cut.endswith("(its checkpoint is kept and the next build resumes it)"), output
    assert checkpoint.is_file()
    cache = root / ".reportgen-cache"
    assert list((cache / "locks").iterdir()) == []
    assert list((cache / "tmp").iterdir()) == []
    names = {json.loads(p.read_text())["name"] for p in (cache / "results").glob("*/result.json")}
    assert "long-gan" not in names
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived the build"
