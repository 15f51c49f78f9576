"""Hard faults: `kill -9` of a build at many random moments, and two builds of one project at once.

The figures (kill moments tried and the phase each hit, partial or corrupt entries accepted, temp
files left behind, experiments trained twice) are printed at the end of the test run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import THREE_NETS, write_project

pytestmark = pytest.mark.slow
FIGURES: dict[str, int] = {}  # read by conftest.pytest_terminal_summary
SEED = 20261127
KILLS = 8

SECTION = THREE_NETS


def tally(name: str, amount: int = 1) -> None:
    FIGURES[name] = FIGURES.get(name, 0) + amount


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "reportgen", "build", "-C", str(root), "--limit-train", "400", "--limit-val", "100"]


def start(root: Path) -> subprocess.Popen:
    return subprocess.Popen(command(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"}, start_new_session=True)


def phase(output: str) -> str:
    """Where a killed build was, judged by what it had printed."""
    if "Report:" in output:
        return "after it finished"
    if "[3/3]" in output or "0 to train" in output:
        return "while rendering"
    if "to train" in output:
        return "while training or storing a result"
    return "while starting"


def cache_state(root: Path) -> dict[str, list[str]]:
    """Each stored entry as the next build will find it, and every leftover temp file."""
    from reportgen import files
    from reportgen.train import store

    cache = root / ".reportgen-cache"
    entries = sorted(p.name for p in (cache / "results").iterdir()) if (cache / "results").is_dir() else []
    opened = store.Store(cache)  # what a build does first: sweeps temp entries of dead processes
    corrupt = [k for k in entries if opened.get(k) is None]
    leftovers = [str(p) for p in (cache / "tmp").iterdir()]
    for folder in (root / "build", root / "experiments", cache / "index"):
        files.sweep_temp_files(folder)  # what a build does before it writes there
        leftovers += [str(p) for p in folder.iterdir() if files.TEMP_FILE.match(p.name)] if folder.is_dir() else []
    return {"entries": [k for k in entries if k not in corrupt], "corrupt": corrupt, "leftovers": leftovers}


def comparable(root: Path) -> dict:
    """The results a report shows, less the seconds each epoch took."""
    rows = json.loads((root / "build" / "results.json").read_text())["experiments"]
    for row in rows:
        row.pop("seconds_per_epoch", None)
        (row.get("history") or {}).pop("seconds", None)
    return {r["name"]: r for r in rows}


def test_kill_9_at_random_moments_loses_nothing_and_ends_with_the_same_report(tmp_path: Path) -> None:
    files = {"experiments/1-nets.toml": SECTION, "experiments/1-nets.md": "{{ runs['net-8'].val_accuracy | pct }}\n"}
    reference = write_project(tmp_path / "reference", files)
    started = time.monotonic()
    done = subprocess.run(command(reference), capture_output=True, text=True, timeout=600)
    whole = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr

    root = write_project(tmp_path / "project", files)
    rng = random.Random(SEED)
    moments = sorted(rng.uniform(0.3, whole) for _ in range(KILLS))
    phases = []
    for moment in moments:
        process = start(root)
        time.sleep(moment)
        killed = process.poll() is None
        if killed:
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=120)
        tally("kill moments tried")
        phases.append(phase(output) if killed else "after it finished")
        tally(f"  killed {phases[-1]}" if killed else "  too late: the build had finished")
        state = cache_state(root)
        tally("damaged entries found after a kill (writes are atomic: expect none)", len(state["corrupt"]))
        tally("temp files a build's own sweep left", len(state["leftovers"]))
        assert state["corrupt"] == [] and state["leftovers"] == [], (moment, state)
        for name in ("manifest.json", "results.json"):
            path = root / "build" / name
            if path.exists():
                json.loads(path.read_text())  # complete or absent, never half-written

    assert "while training or storing a result" in phases, phases  # the moment that matters most was hit
    before = set(cache_state(root)["entries"])
    final = subprocess.run(command(root), capture_output=True, text=True, timeout=600,
                           env={**os.environ, "COLUMNS": "200"})
    assert final.returncode == 0, final.stdout + final.stderr
    manifest = json.loads((root / "build" / "manifest.json").read_text())
    # What this build trained, from its own output: when a kill came too late, the build before it
    # finished, and this one leaves that build's report (and manifest) as they are.
    trained_now = set(re.findall(r"\[\d+/\d+\] (\S+): ", final.stdout))
    retrained = [e["name"] for e in manifest["experiments"] if e["name"] in trained_now and e["key"] in before]
    tally("finished experiments retrained after a kill", len(retrained))
    assert retrained == []
    assert comparable(root) == comparable(reference)  # same seeds, same numbers, same report
    assert list((root / ".reportgen-cache" / "locks").iterdir()) == []
    from reportgen.files import TEMP_FILE

    leftovers = [str(p) for p in root.rglob("*") if TEMP_FILE.match(p.name) or p.suffix == ".tmp"]
    leftovers += [str(p) for p in (root / ".reportgen-cache" / "tmp").iterdir()]
    leftovers += [str(p) for p in (root / ".reportgen-cache" / "partial").iterdir()]
    tally("temp files or checkpoints left after the final build", len(leftovers))
    assert leftovers == []


def test_two_builds_at_once_train_each_experiment_once(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project", {"experiments/1-nets.toml": SECTION, "experiments/1-nets.md": "x\n"})
    first, second = start(root), start(root)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    both = "\n".join(outputs)
    assert "Traceback" not in both and "damaged" not in both
    for name in ("net-8", "net-16", "net-24"):
        trained = sum(f"] {name}: val_accuracy" in out for out in outputs)
        reused = sum(f"] {name}: trained by another build" in out for out in outputs)
        tally("experiments trained twice by two builds at once", int(trained > 1))
        assert (trained, reused) == (1, 1), (name, outputs)
    assert len(list((root / ".reportgen-cache" / "results").iterdir())) == 3


@pytest.mark.parametrize("damage", ["empty file", "flipped bytes", "invalid JSON"])
def test_a_damaged_cache_entry_is_set_aside_retrained_and_reported(tmp_path: Path, damage: str) -> None:
    from .conftest import build_or_fail

    files = {"experiments/1-nets.toml": SECTION.replace("[[8], [16], [24]]", "[[8]]"),
             "experiments/1-nets.md": "x\n"}
    root = write_project(tmp_path / "project", files)
    limits = ["--limit-train", "300", "--limit-val", "50"]
    build_or_fail(root, limits)
    first = comparable(root)
    [entry] = list((root / ".reportgen-cache" / "results").iterdir())
    target = entry / "result.json"
    if damage == "empty file":
        target.write_bytes(b"")
    elif damage == "flipped bytes":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x5A
        target.write_bytes(bytes(data))
    else:
        target.write_text("{not json")
    output = build_or_fail(root, limits)
    assert "was damaged" in output and "1 to train" in output, output
    assert len(list((root / ".reportgen-cache" / "corrupt").iterdir())) == 1
    assert comparable(root) == first
    tally(f"damaged entries detected and retrained ({damage})")
