"""The content-addressed result cache: keys, atomic writes, verified reads, locks, staleness.

Layout under the cache root (default `<project>/.reportgen-cache`, or $REPORTGEN_CACHE):
  results/<key>/   result.json, arrays.npz, inputs.json, then MANIFEST.json (hashes of the rest)
  index/<name>.json  the inputs of the last result stored for a run name, to explain staleness
  locks/<key>.lock   held while a process trains that key; records the pid
  tmp/               entries being written; renamed into results/ when complete
  corrupt/           entries that failed verification, moved aside, never read again
  partial/<key>/     checkpoints of long runs (GANs) in progress, removed once the result is stored
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from reportgen.errors import CacheError
from reportgen.files import pid_alive, sweep_temp_files, write_atomic, write_synced
from reportgen.project.spec import CustomSpec, Experiment, builder_path
from reportgen.train.result import RESULT_SCHEMA, ClassifierResult, GanResult, ModeCollapseResult, to_json
from reportgen.train.result import parse as parse_result

StoredResult = ClassifierResult | GanResult | ModeCollapseResult

WEIGHTS_FILE = "model.weights.h5"  # a classifier's trained weights, beside its result
SCHEMA = RESULT_SCHEMA  # in every key: results of an earlier schema are trained again, never misread
PACKAGE_DIR = Path(__file__).parent
# The code that turns a configuration into numbers, per model kind: a change here invalidates
# every result of that kind.
# jax_loop.py and tf_loop.py are the classifiers' training loops under JAX and TensorFlow; xla.py
# sets the XLA options of those loops and the GAN's; tf_kernels.py is the kernels TensorFlow runs in
# place of Keras' ops (Adam, the L2 penalty, a matrix product's gradient); machine.py seeds every run
# and sets determinism and thread pools; outcome.py assembles what a run records.
_CLASSIFIER_SOURCES = ("run.py", "models.py", "machine.py", "outcome.py", "xla.py", "jax_loop.py", "tf_loop.py",
                       "tf_kernels.py")
TRAINING_SOURCES = {"mlp": _CLASSIFIER_SOURCES, "cnn": _CLASSIFIER_SOURCES, "custom": _CLASSIFIER_SOURCES,
                    "gan": (*_CLASSIFIER_SOURCES, "gan.py")}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sources_hash(names: tuple[str, ...]) -> str:
    """Hash of some of reportgen's own source files."""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes())
    return h.hexdigest()


def code_fingerprint(exp: Experiment, experiments_dir: Path) -> str:
    """Hash of the source that trains this experiment: reportgen's training code, plus the
    project's builder module for `custom` models."""

    h = hashlib.sha256(sources_hash(TRAINING_SOURCES[exp.model.kind]).encode())
    if isinstance(exp.model, CustomSpec):
        path = builder_path(exp.model.builder, experiments_dir)
        h.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>"))
    return h.hexdigest()


def inputs_for(exp: Experiment, experiments_dir: Path, data_fingerprint: str, backend: str,
               versions: dict[str, str], precision: str = "float32") -> dict[str, Any]:
    """Everything that can change a result; its hash is the result's key."""
    return {
        "schema": SCHEMA,
        "config": exp.config(),
        "code": code_fingerprint(exp, experiments_dir),
        "data": data_fingerprint,
        "backend": backend,
        "versions": versions,
        "precision": precision,
    }


def key_of(inputs: dict[str, Any]) -> str:
    return _sha256(canonical(inputs))[:32]


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Why a result for these inputs is not in the cache, in terms a user changed."""
    if old is None:
        return ["never run"]
    reasons = []
    earlier = old.get("schema") != new["schema"]
    if earlier:  # its result has another shape, and its key was made another way: trained once more
        reasons.append(f"stored by an earlier reportgen (result schema {old.get('schema')}, now {new['schema']}); "
                       "trains once again")
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for k in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(k) != new_cfg.get(k):
            reasons.append(f"{k} changed: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}")
    if old.get("code") != new["code"] and not earlier:  # the new reportgen's code differs, of course
        reasons.append("training code changed")
    if old.get("data") != new["data"]:
        reasons.append(f"data set changed (fingerprint {str(old.get('data'))[:12]} -> {new['data'][:12]})")
    if old.get("backend") != new["backend"]:
        reasons.append(f"backend changed: {old.get('backend')} -> {new['backend']}")
    old_v, new_v = old.get("versions", {}), new["versions"]
    for k in sorted(set(old_v) | set(new_v)):
        if old_v.get(k) != new_v.get(k):
            reasons.append(f"{k} version changed: {old_v.get(k)} -> {new_v.get(k)}")
    if old.get("precision") != new.get("precision"):
        reasons.append(f"precision changed: {old.get('precision')} -> {new.get('precision')}")
    return reasons or ["stored result missing or discarded"]


R = TypeVar("R", ClassifierResult | GanResult, ModeCollapseResult, StoredResult)


@dataclass(frozen=True)
class Entry(Generic[R]):
    """A verified cache entry: its typed result, the inputs its key hashes, and its files."""

    key: str
    path: Path
    result: R
    inputs: dict[str, Any]

    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "arrays.npz", allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def file(self, name: str) -> Path | None:
        """A file stored with the result (trained weights, a text log), verified when read."""
        path = self.path / name
        return path if path.is_file() else None


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.results = root / "results"
        self.warnings: list[str] = []
        for sub in ("results", "index", "locks", "tmp", "corrupt", "partial", "replaced"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    # --- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> Entry[ClassifierResult | GanResult] | None:
        """A training run's verified entry for key, or None. A damaged entry is moved aside and reported."""
        entry = self._read(key)
        if entry is None or isinstance(entry.result, (ClassifierResult, GanResult)):
            return entry  # type: ignore[return-value]  # narrowed by the isinstance above
        self._quarantine(entry.path, f"a {entry.result.kind} result where a training run's was expected")
        return None

    def measure(self, key: str) -> Entry[ModeCollapseResult] | None:
        """A derived measurement's verified entry for key, or None."""
        entry = self._read(key)
        if entry is None or isinstance(entry.result, ModeCollapseResult):
            return entry  # type: ignore[return-value]  # narrowed by the isinstance above
        self._quarantine(entry.path, f"a {entry.result.kind} result where a measurement was expected")
        return None

    def _read(self, key: str) -> Entry[StoredResult] | None:
        path = self.results / key
        if not path.exists():
            return None
        try:
            manifest = json.loads((path / "MANIFEST.json").read_bytes())
            for name, digest in manifest["files"].items():
                if _sha256((path / name).read_bytes()) != digest:
                    raise ValueError(f"{name} does not match its recorded hash")
            result = parse_result(json.loads((path / "result.json").read_bytes()))  # a ValueError when it does not fit
            inputs = json.loads((path / "inputs.json").read_bytes())
            if key_of(inputs) != key:
                raise ValueError("inputs do not hash to the entry's key")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._quarantine(path, str(exc))
            return None
        return Entry[StoredResult](key=key, path=path, result=result, inputs=inputs)

    def _quarantine(self, path: Path, why: str) -> None:
        target = self.root / "corrupt" / f"{path.name}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        with contextlib.suppress(OSError):
            os.replace(path, target)
        self.warnings.append(f"cached result {path.name} was damaged ({why}); moved to {target} "
                             "and will be recomputed")

    def last_inputs(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.root / "index" / f"{name}.json").read_bytes()))
        except (OSError, ValueError):
            return None

    # --- writing ------------------------------------------------------------------------------

    @property
    def programs(self) -> Path:
        """Where JAX keeps the programs it compiled for this cache's runs (`reportgen doctor` shows it)."""
        return self.root / "xla"

    def partial(self, key: str) -> Path:
        """Where a long run keeps its checkpoint while it trains."""
        return self.root / "partial" / key

    def put(self, key: str, inputs: dict[str, Any], result: StoredResult,
            arrays: dict[str, np.ndarray], extra: dict[str, bytes] | None = None, replace: bool = False) -> Entry[Any]:
        """Write an entry atomically: a temp folder on the same file system, renamed when whole.
        `extra` files are stored beside the result and covered by the manifest's hashes. `replace`
        (a forced retrain, by the holder of the key's lock) puts the new entry in place of a stored
        one; otherwise a stored one stands, as another process's equally valid result."""
        tmp = self.root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
            files = {
                "result.json": json.dumps(to_json(result), indent=1, sort_keys=True).encode(),
                "inputs.json": json.dumps(inputs, indent=1, sort_keys=True).encode(),
                "arrays.npz": buffer.getvalue(),
            }
            for name in extra or {}:
                if name in files or name == "MANIFEST.json" or "/" in name:
                    raise CacheError(f"cannot store an extra file named {name!r}")
            files.update(extra or {})
            for name, data in files.items():
                write_synced(tmp / name, data)
            manifest = {"key": key, "files": {n: _sha256(d) for n, d in files.items()}}
            write_synced(tmp / "MANIFEST.json", json.dumps(manifest, indent=1).encode())
            final = self.results / key
            old = self.root / "replaced" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            if replace and final.exists():
                # Set aside, not deleted, until the new entry is in place: a crash in between leaves
                # the old one to be put back when the cache is next opened (_sweep_tmp).
                os.replace(final, old)
            try:
                os.replace(tmp, final)
            except OSError:
                # Another process stored the same key first; its entry is equally valid.
                shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.record_index(result.name, inputs)
        entry = self._read(key)
        if entry is None:
            raise CacheError(f"result {key} could not be read back after writing")
        return entry

    def record_index(self, name: str, inputs: dict[str, Any]) -> None:
        write_atomic(self.root / "index" / f"{name}.json", json.dumps(inputs, indent=1, sort_keys=True).encode())

    def _sweep_tmp(self) -> None:
        """Remove temp entries and files left by processes that died mid-write (kill -9, power loss)."""
        for path in (self.root / "tmp").iterdir():
            parts = path.name.split(".")
            pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
            if pid is None or not pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
        for folder in (self.root / "index", *(self.root / "partial").iterdir()):
            sweep_temp_files(folder)
        for path in (self.root / "replaced").iterdir():  # set aside by a forced retrain that died
            key, _, rest = path.name.partition(".")
            writer = rest.split(".")[0]
            if writer.isdigit() and pid_alive(int(writer)):
                continue
            if (self.results / key).exists():
                shutil.rmtree(path, ignore_errors=True)  # the new entry made it
            else:
                os.replace(path, self.results / key)  # it did not: the old result stands

    # --- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, wait_message: Any = None, poll: float = 0.5) -> Iterator[None]:
        """Hold the lock for one key, so two builds at once train it once. A lock whose process
        is dead is reclaimed."""
        path = self.root / "locks" / f"{key}.lock"
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        told = False
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_bytes())
                    pid = int(holder["pid"])
                    same_host = holder.get("host") == socket.gethostname()
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError, TypeError):
                    # Unreadable: either being written this instant, or its writer died mid-write.
                    with contextlib.suppress(OSError):
                        if time.time() - path.stat().st_mtime < 5:
                            time.sleep(poll)
                            continue
                    pid, same_host = -1, True
                if same_host and (pid < 0 or not pid_alive(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                if wait_message and not told:
                    wait_message(pid)
                    told = True
                time.sleep(poll)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(me)
            break
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


