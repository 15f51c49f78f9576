"""Where a project's data come from, as `data` in experiments/project.toml declares it, and the
checks every source passes before anything trains.

`data` is either a name (a set Keras ships: "mnist", "fashion_mnist", "cifar10", "cifar100"; or
"auto" and "mnist-sample", see project/data.py) or a table with a `source`:

    [data]                       [data]                         [data]
    source = "npz"               source = "csv"                 source = "images"
    path = "data/shapes.npz"     path = "data/flowers.csv"      path = "data/leaves"
    classes = ["a", "b", "c"]    label = "species"              image_size = [64, 64]
                                 validation_fraction = 0.2      validation_fraction = 0.2

Paths are relative to the project folder. This module declares the sources; project/data.py reads
them, and names every problem with the file, the array or column and what was expected."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

KerasName = Literal["mnist", "fashion_mnist", "cifar10", "cifar100"]
NAMES = ("auto", "mnist", "mnist-sample", "fashion_mnist", "cifar10", "cifar100")


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # What the title page calls the data set (default: from the source).
    name: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    # The classes' names, label 0 first. Default: the labels' own numbers, or the sorted distinct
    # strings of a text label column.
    classes: Annotated[list[Annotated[str, Field(min_length=1, max_length=40)]], Field(min_length=2)] | None = None


class _Split(_Source):
    validation: str | None = None  # a second file or folder holding the validation examples
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None  # else: split off this share
    split_seed: Annotated[int, Field(ge=0)] = 0  # the split is stratified and drawn with this seed


class KerasData(_Source):
    source: Literal["keras"]
    set: KerasName
    path: str | None = None  # a local copy in Keras' layout (x_train, y_train, x_test, y_test)


class NpzData(_Source):
    """x_train, y_train and x_val, y_val (or x_test, y_test) in one NumPy .npz."""

    source: Literal["npz"]
    path: str


class CsvData(_Split):
    """One row per example: numeric feature columns and a label column (integers or text)."""

    source: Literal["csv"]
    path: str
    label: Annotated[str, Field(min_length=1)]
    features: list[str] | None = None  # default: every column but the label
    missing: Literal["error", "drop", "mean"] = "error"  # empty cells: refuse, drop the row, or the column's mean
    categorical: Literal["error", "onehot"] = "error"  # text in a feature column: refuse, or one column per value
    standardize: bool = True  # each feature to mean 0, deviation 1, by the training rows' statistics


class ImageFolderData(_Split):
    """One subfolder per class, read with Keras' image_dataset_from_directory."""

    source: Literal["images"]
    path: str
    image_size: Annotated[list[Annotated[int, Field(gt=0, le=1024)]], Field(min_length=2, max_length=2)] = [64, 64]
    color_mode: Literal["rgb", "grayscale"] = "rgb"


Source = Annotated[KerasData | NpzData | CsvData | ImageFolderData, Field(discriminator="source")]
SOURCE: TypeAdapter[Any] = TypeAdapter(Source)
SOURCES = ("keras", "npz", "csv", "images")  # the tags of a [data] table's `source`


def label(spec: str | BaseModel) -> str:
    """What a run's configuration records as its data: the name, or the source and its path."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, KerasData):
        return spec.set if spec.path is None else f"{spec.set}:{spec.path}"
    if isinstance(spec, NpzData | CsvData | ImageFolderData):
        return f"{spec.source}:{spec.path}"
    raise AssertionError(f"unhandled data source {spec!r}")
