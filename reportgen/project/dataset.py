"""A data set as every later stage sees it: images and labels, held read-only, with a fingerprint of
the exact pixels. Where the images come from is project/data.py's business."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, 28, 28) and integer labels; `name` is what ran, `notice` says why."""

    name: str
    description: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    notice: str = ""

    def __post_init__(self) -> None:
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val):
            arr.flags.writeable = False  # the fingerprint below is computed once: the pixels stay as hashed

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickled (in a worker process, on a cluster): read-only again, as built."""
        self.__dict__.update(state)
        self.__post_init__()

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the exact pixels and labels: a different split or file is a different data set.
        Once per data set: a build asks for it per run and for its cache keys, 0.05 s each time for
        MNIST's 60,000 images."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(str((arr.shape, arr.dtype.str)).encode())
            h.update(np.ascontiguousarray(arr).data)  # the bytes, without copying them
        return h.hexdigest()

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "train": int(len(self.y_train)),
            "validation": int(len(self.y_val)),
            "fingerprint": self.fingerprint,
            "notice": self.notice,
        }


def subset(data: Dataset, train: int, val: int) -> Dataset:
    """The first `train`/`val` images: for tests and smoke runs on a few hundred images."""
    return Dataset(name=f"{data.name}[{train}/{val}]", description=f"{data.description}, first {train}/{val}",
                   x_train=data.x_train[:train], y_train=data.y_train[:train],
                   x_val=data.x_val[:val], y_val=data.y_val[:val], notice=data.notice)
