"""The result cache: what invalidates a result, atomic writes, verified reads, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reportgen.project.spec import load_project
from reportgen.train import store
from tests.conftest import REPO

VERSIONS = {"keras": "3.0", "tensorflow": "2.0", "numpy": "2.0", "python": "3.11"}


def inputs(exp, data="d" * 64, backend="tensorflow", versions=VERSIONS):
    return store.inputs_for(exp, REPO / "experiments", data, backend, versions)


@pytest.fixture
def experiments():
    return {e.name: e for e in load_project(REPO).experiments}


def test_key_changes_with_config_data_backend_and_versions_only(experiments):
    exp = experiments["l2-0.01"]
    base = store.key_of(inputs(exp))
    assert store.key_of(inputs(exp)) == base  # deterministic
    assert store.key_of(inputs(experiments["l2-1"])) != base
    assert store.key_of(inputs(exp, data="e" * 64)) != base
    assert store.key_of(inputs(exp, backend="jax")) != base
    assert store.key_of(inputs(exp, versions={**VERSIONS, "keras": "3.1"})) != base


def test_explain_names_the_input_that_changed(experiments):
    old = inputs(experiments["l2-0.01"])
    new = inputs(experiments["l2-1"])
    reasons = store.explain(old, new)
    assert "strength changed: 0.01 -> 1.0" in reasons
    assert "name changed: 'l2-0.01' -> 'l2-1'" in reasons
    assert store.explain(None, new) == ["never run"]
    assert store.explain(old, inputs(experiments["l2-0.01"], backend="jax")) == ["backend changed: tensorflow -> jax"]


def test_custom_builder_source_is_part_of_the_key(make_project):
    root = make_project({
        "experiments/s.toml": 'number = "1"\ntitle = "t"\n[[runs]]\nname = "c"\nkind = "custom"\n'
                              'builder = "nets:tiny"\n',
        "experiments/nets.py": "def tiny():\n    return None\n",
    })
    exp = load_project(root).experiments[0]
    before = store.code_fingerprint(exp, root / "experiments")
    (root / "experiments/nets.py").write_text("def tiny():\n    return 1\n")
    assert store.code_fingerprint(exp, root / "experiments") != before


def put(cache, key="k" * 32, name="run"):
    return cache.put(key, {"x": 1}, {"name": name, "value": 0.5}, {"images": np.arange(6).reshape(2, 3)})


def test_put_then_get_round_trips_and_leaves_no_temp_files(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    entry = put(cache, key)
    again = cache.get(key)
    assert again is not None and again.result == {"name": "run", "value": 0.5}
    assert again.arrays()["images"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert entry.path == tmp_path / "results" / key
    assert list((tmp_path / "tmp").iterdir()) == []
    assert cache.last_inputs("run") == {"x": 1}


def test_a_forced_retrain_replaces_the_stored_entry_and_a_plain_put_keeps_it(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    put(cache, key)
    kept = cache.put(key, {"x": 1}, {"name": "run", "value": 0.7}, {})
    assert kept.result["value"] == 0.5  # another process's result for the key stands
    forced = cache.put(key, {"x": 1}, {"name": "run", "value": 0.9}, {}, replace=True)
    assert forced.result["value"] == 0.9 and cache.get(key).result["value"] == 0.9
    assert list((tmp_path / "replaced").iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_an_entry_set_aside_by_a_forced_retrain_that_died_is_put_back(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    put(cache, key)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    # As a process killed between its two renames leaves it: the old entry aside, no new one.
    os.replace(tmp_path / "results" / key, tmp_path / "replaced" / f"{key}.{dead}.0123abcd")
    again = store.Store(tmp_path).get(key)
    assert again is not None and again.result == {"name": "run", "value": 0.5}
    assert list((tmp_path / "replaced").iterdir()) == []
    # Killed after the second rename: the new entry stands and the old one goes.
    other = store.key_of({"x": 2})
    cache.put(other, {"x": 2}, {"name": "other"}, {})
    (tmp_path / "replaced" / f"{other}.{dead}.0123abcd").mkdir()
    store.Store(tmp_path)
    assert list((tmp_path / "replaced").iterdir()) == [] and store.Store(tmp_path).get(other) is not None


@pytest.mark.parametrize("damage", ["empty", "flip", "json", "missing_manifest"])
def test_damaged_entry_is_moved_aside_and_reported(tmp_path, damage):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    entry = put(cache, key)
    target = entry.path / "result.json"
    if damage == "empty":
        target.write_bytes(b"")
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[5] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "json":
        target.write_text("{not json")
    else:
        (entry.path / "MANIFEST.json").unlink()
    assert cache.get(key) is None
    assert not entry.path.exists()
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    assert "was damaged" in cache.warnings[0]


def test_orphan_temp_entries_of_dead_processes_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    orphan = tmp_path / "tmp" / f"{'a' * 32}.{dead}.abcd1234"
    orphan.mkdir(parents=True)
    (orphan / "result.json").write_text("{}")
    mine = tmp_path / "tmp" / f"{'b' * 32}.{os.getpid()}.abcd1234"
    mine.mkdir()
    store.Store(tmp_path)
    assert not orphan.exists() and mine.exists()


def test_lock_of_a_dead_process_is_reclaimed(tmp_path):
    cache = store.Store(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    import socket

    lock = tmp_path / "locks" / "key.lock"
    lock.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    with cache.lock("key"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_lock_held_by_a_live_process_waits(tmp_path):
    cache = store.Store(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket
        import threading

        lock = tmp_path / "locks" / "key.lock"
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        told: list[int] = []
        acquired = threading.Event()

        def take():
            with cache.lock("key", wait_message=told.append, poll=0.05):
                acquired.set()

        thread = threading.Thread(target=take)
        thread.start()
        assert not acquired.wait(0.5)  # the live holder keeps it
        assert told == [holder.pid]
        holder.kill()
        holder.wait()
        assert acquired.wait(5)
        thread.join()
    finally:
        holder.kill()
