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
from reportgen.train.result import GanResult, ModeCollapseResult
from tests.conftest import REPO, classifier_result

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
    return cache.put(key, {"x": 1}, classifier_result(name, 0.5), {"images": np.arange(6).reshape(2, 3)})


def test_put_then_get_round_trips_and_leaves_no_temp_files(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    entry = put(cache, key)
    again = cache.get(key)
    assert again is not None and again.result == classifier_result("run", 0.5)
    assert again.arrays()["images"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert entry.path == tmp_path / "results" / key
    assert list((tmp_path / "tmp").iterdir()) == []
    assert cache.last_inputs("run") == {"x": 1}


def test_a_forced_retrain_replaces_the_stored_entry_and_a_plain_put_keeps_it(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    put(cache, key)
    kept = cache.put(key, {"x": 1}, classifier_result("run", 0.7), {})
    assert kept.result.final["val_accuracy"] == 0.5  # another process's result for the key stands
    forced = cache.put(key, {"x": 1}, classifier_result("run", 0.9), {}, replace=True)
    assert forced.result.final["val_accuracy"] == 0.9 and cache.get(key).result.final["val_accuracy"] == 0.9
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
    assert again is not None and again.result == classifier_result("run", 0.5)
    assert list((tmp_path / "replaced").iterdir()) == []
    # Killed after the second rename: the new entry stands and the old one goes.
    other = store.key_of({"x": 2})
    cache.put(other, {"x": 2}, classifier_result("other"), {})
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


def test_a_stored_result_comes_back_typed_with_a_diverged_runs_nan_intact(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    diverged = classifier_result("boom", float("nan"), status="diverged",
                                 diverged={"epoch": 2, "batch": 3, "loss": "nan"}, best=None)
    cache.put(key, {"x": 1}, diverged, {})
    again = cache.get(key)
    assert again is not None and again.result.diverged is not None and again.result.diverged.epoch == 2
    assert again.result.best is None and again.result.history["epoch"] == [1, 2]  # ints stay ints
    assert np.isnan(again.result.final["val_accuracy"])
    stored = json.loads((again.path / "result.json").read_text())
    assert stored["schema_version"] == 2 and stored["kind"] == "classifier"


def test_a_result_that_does_not_fit_its_model_is_moved_aside_with_what_is_wrong(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"x": 1})
    entry = put(cache, key)
    raw = json.loads((entry.path / "result.json").read_text())
    del raw["summary"]
    text = json.dumps(raw).encode()
    manifest = json.loads((entry.path / "MANIFEST.json").read_text())
    manifest["files"]["result.json"] = store._sha256(text)  # the hashes agree: only the shape is wrong
    (entry.path / "result.json").write_bytes(text)
    (entry.path / "MANIFEST.json").write_text(json.dumps(manifest))
    assert cache.get(key) is None
    assert "summary" in cache.warnings[-1] and "Field required" in cache.warnings[-1]
    assert len(list((tmp_path / "corrupt").iterdir())) == 1


def test_a_measurement_is_not_read_as_a_training_run(tmp_path):
    cache = store.Store(tmp_path)
    key = store.key_of({"measure": 1})
    measured = ModeCollapseResult(name="mode-collapse.gan.clf", gan="gan", classifier="clf", epochs=[1, 2])
    cache.put(key, {"measure": 1}, measured, {})
    assert cache.measure(key) is not None and cache.measure(key).result == measured
    assert cache.get(key) is None and "where a training run's was expected" in cache.warnings[-1]


def test_a_gan_result_needs_its_own_fields():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        GanResult.model_validate({**classifier_result().model_dump(exclude={"kind", "steps_trained", "best",
                                                                            "misclassified"})})


def test_entries_of_an_earlier_schema_are_trained_once_again_and_say_so():
    old = {"schema": 1, "config": {"epochs": 2}, "code": "a", "data": "d", "backend": "tensorflow",
           "versions": {}, "precision": "float32"}
    new = {**old, "schema": store.SCHEMA, "code": "b"}
    assert store.explain(old, new) == ["stored by an earlier reportgen (result schema 1, now 2); trains once again"]
    assert store.explain({**old, "schema": 2}, new) == ["training code changed"]
