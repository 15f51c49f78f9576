"""A data set as every later stage sees it: inputs and integer labels, held read-only, with its class
names and a fingerprint of the exact values. Where the data come from is project/data.py's business.

Inputs are images, (N, H, W) or (N, H, W, C), or flat feature vectors, (N, D). Images are uint8
(0..255, divided by 255 for training) or float32 already within 0..1 (used as they are); features
are float32, used as they are."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np


def divisor_of(inputs: np.ndarray) -> float:
    """What inputs are divided by for training: 255 for uint8 images, 1 for float values (which
    dividing by 1.0 leaves exactly as they are)."""
    return 255.0 if inputs.dtype == np.uint8 else 1.0


def digit_names(count: int = 10) -> tuple[str, ...]:
    """The class names of labels that are their own names: "0", "1", ..."""
    return tuple(str(i) for i in range(count))


@dataclass(frozen=True)
class Dataset:
    """`name` is what ran (the title page's name), `description` says what it is and where it came
    from, `notice` why it is not what was asked for (a fallback). `classes` names each label 0..n-1."""

    name: str
    description: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    notice: str = ""
    classes: tuple[str, ...] = ()  # () for the labels' own numbers, 0 to the largest label
    source: str = ""  # the file, folder or loader the values were read from

    def __post_init__(self) -> None:
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val):
            arr.flags.writeable = False  # the fingerprint below is computed once: the values stay as hashed
        if not self.classes:
            largest = max(int(self.y_train.max(initial=0)), int(self.y_val.max(initial=0)))
            object.__setattr__(self, "classes", digit_names(largest + 1))

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickled (in a worker process, on a cluster): read-only again, as built."""
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: (H, W), (H, W, C) or (D,)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def kind(self) -> str:
        """"images" or "features" (flat vectors)."""
        return "features" if self.x_train.ndim == 2 else "images"

    @property
    def divisor(self) -> float:
        """What inputs are divided by for training: 255 for uint8 images, 1 for float values."""
        return divisor_of(self.x_train)

    @property
    def scale(self) -> str:
        """How the inputs are scaled, in words, for the report."""
        if self.kind == "features":
            return "feature values as given"
        return ("8-bit pixels (0 to 255), divided by 255" if self.divisor == 255.0 else
                "pixel values from 0 to 1, used as they are")

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the exact values and labels: a different split or file is a different data set.
        Declared class names count too (they fix the number of outputs); the labels' own numbers
        add nothing, so MNIST keeps the fingerprint it had before class names existed. Once per
        data set: a build asks for it per run and for its cache keys, 0.05 s each time for MNIST's
        60,000 images."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(str((arr.shape, arr.dtype.str)).encode())
            h.update(np.ascontiguousarray(arr).data)  # the bytes, without copying them
        largest = max(int(self.y_train.max(initial=0)), int(self.y_val.max(initial=0)))
        if self.classes != digit_names(largest + 1):
            h.update(repr(self.classes).encode())
        return h.hexdigest()

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "kind": self.kind,
            "shape": list(self.input_shape),
            "classes": list(self.classes),
            "scale": self.scale,
            "train": int(len(self.y_train)),
            "validation": int(len(self.y_val)),
            "fingerprint": self.fingerprint,
            "notice": self.notice,
        }


def subset(data: Dataset, train: int, val: int) -> Dataset:
    """The first `train`/`val` examples: for tests and smoke runs on a few hundred images."""
    return replace(data, name=f"{data.name}[{train}/{val}]", description=f"{data.description}, first {train}/{val}",
                   x_train=data.x_train[:train], y_train=data.y_train[:train],
                   x_val=data.x_val[:val], y_val=data.y_val[:val])


def stratified(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of `count` of `labels` (all when there are fewer), each class kept in its share,
    drawn with `seed`, in the original order: the same subsample on every machine."""
    if count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = np.floor(counts * count / len(labels)).astype(int)
    # The places left by rounding down go to the classes with the largest remainders.
    remainders = counts * count / len(labels) - quotas
    for i in np.argsort(-remainders, kind="stable")[: count - int(quotas.sum())]:
        quotas[i] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quotas, strict=True)]
    return np.sort(np.concatenate(chosen))


def sample(data: Dataset, train: int, val: int, seed: int = 0) -> Dataset:
    """A stratified, seeded subsample of at most `train`/`val` examples (the quick profile's)."""
    if train >= len(data.y_train) and val >= len(data.y_val):
        return data
    t, v = stratified(data.y_train, train, seed), stratified(data.y_val, val, seed + 1)
    return replace(data, name=f"{data.name}[{len(t)}/{len(v)}]",
                   description=f"{data.description}; a stratified sample of {len(t):,} training and "
                               f"{len(v):,} validation examples",
                   x_train=data.x_train[t], y_train=data.y_train[t], x_val=data.x_val[v], y_val=data.y_val[v])
