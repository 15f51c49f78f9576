"""Data of the user's own: NumPy files and CSV tables, read, checked and named; every bad file is one
clear error naming the file, the array or column and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reportgen.errors import DataError, SpecError
from reportgen.project.data import load_source
from reportgen.project.dataset import Dataset, sample
from reportgen.project.sources import CsvData, NpzData
from reportgen.project.spec import data_problems, load_project

SHAPES = ("circle", "square", "triangle")


def colour_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 12x10 RGB images of three classes, each class its own dominant channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, (n, 12, 10, 3)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, :, :, label] += 150
    return x, y


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def shapes_npz(root: Path, **changes: np.ndarray) -> Path:
    x_train, y_train = colour_images(60)
    x_val, y_val = colour_images(30, seed=1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val, **changes}
    return write_npz(root / "data" / "shapes.npz", **arrays)


def load_npz(root: Path, **spec: object) -> Dataset:
    return load_source(NpzData(source="npz", path="data/shapes.npz", **spec), root)


def test_colour_images_of_three_named_classes(tmp_path):
    shapes_npz(tmp_path)
    data = load_npz(tmp_path, classes=list(SHAPES), name="Shapes")
    assert (data.name, data.kind, data.input_shape, data.classes) == ("Shapes", "images", (12, 10, 3), SHAPES)
    assert data.x_train.dtype == np.uint8 and data.divisor == 255.0 and data.num_classes == 3
    summary = data.summary()
    assert summary["classes"] == list(SHAPES) and summary["shape"] == [12, 10, 3] and summary["train"] == 60
    assert summary["source"] == "data/shapes.npz" and "8-bit" in summary["scale"]
    # Class names fix the number of outputs: part of the fingerprint; the labels' own numbers are not.
    unnamed = load_npz(tmp_path)
    assert unnamed.classes == ("0", "1", "2") and unnamed.fingerprint != data.fingerprint


def test_float_images_from_0_to_1_and_test_keys_are_accepted(tmp_path):
    x_train, y_train = colour_images(30)
    x_val, y_val = colour_images(9, seed=1)
    write_npz(tmp_path / "data" / "shapes.npz", x_train=x_train / 255.0, y_train=y_train.astype(float),
              x_test=x_val / 255.0, y_test=y_val)
    data = load_npz(tmp_path)
    assert data.x_train.dtype == np.float32 and data.divisor == 1.0 and "0 to 1" in data.scale
    assert data.y_train.dtype == np.int64 and len(data.y_val) == 9


def test_flat_feature_vectors_are_features(tmp_path):
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "data" / "shapes.npz", x_train=rng.normal(size=(20, 5)), y_train=np.arange(20) % 2,
              x_val=rng.normal(size=(6, 5)), y_val=np.arange(6) % 2)
    data = load_npz(tmp_path)
    assert data.kind == "features" and data.input_shape == (5,) and data.x_train.dtype == np.float32


@pytest.mark.parametrize(("changes", "expected"), [
    ({"y_train": np.r_[np.arange(59) % 3, 3]},
     "label 3 is out of range: 3 classes (circle, square, triangle) take labels 0 to 2"),
    ({"x_val": colour_images(30, seed=1)[0] / 255.0},
     "x_train is 8-bit (0 to 255) but x_val is floats (0 to 1); expected one scale for both"),
    ({"x_train": np.where(np.arange(60)[:, None, None, None] == 7, np.nan, colour_images(60)[0] / 255.0)},
     "x_train has NaN or infinite pixel values (first at image 7)"),
    ({"y_val": np.arange(29) % 3}, "y_val has 29 labels but x_val has 30 examples"),
    ({"y_train": np.stack([np.arange(60) % 3] * 2, axis=1)}, "y_train has shape (60, 2); expected one"),
    ({"y_train": np.r_[np.arange(59) % 3, 1.5]}, "y_train[59] is 1.5; expected whole-number labels"),
    ({"y_train": np.r_[np.arange(59) % 3, -1]}, "y_train has the label -1; expected labels from 0"),
    ({"x_train": colour_images(60)[0].astype(np.int64) * 2}, "x_train has pixel values from 0 to"),
    ({"x_train": colour_images(60)[0][:, :, :6]}, "x_train's examples are (12, 6, 3) but x_val's (12, 10, 3)"),
    ({"x_train": np.zeros((60, 4, 4, 5), np.uint8)}, "5 channels; expected 1, 3 or 4 (channels last)"),
    ({"x_train": np.zeros(60, np.uint8)}, "x_train has shape (60,); expected images (N, H, W)"),
])
def test_bad_arrays_are_named_with_what_was_expected(tmp_path, changes, expected):
    shapes_npz(tmp_path, **changes)
    with pytest.raises(DataError) as info:
        load_npz(tmp_path, classes=list(SHAPES))
    assert str(info.value).startswith("data/shapes.npz: ") and expected in str(info.value)


def test_a_label_gap_without_declared_classes_is_refused(tmp_path):
    shapes_npz(tmp_path, y_train=np.where(np.arange(60) % 3 == 1, 11, np.arange(60) % 3),
               y_val=np.arange(30) % 3)
    with pytest.raises(DataError, match=r"y_train has no example of label\(s\) \[1, 3, 4, 5, 6\] below its largest "
                                        r"label 11: labels must number the classes 0 to N-1"):
        load_npz(tmp_path)


def test_missing_arrays_and_files_are_named(tmp_path):
    write_npz(tmp_path / "data" / "shapes.npz", x_train=np.zeros((3, 4, 4)), y_train=np.zeros(3))
    with pytest.raises(DataError, match=r"missing array\(s\) x_val, y_val; expected x_train, y_train and x_val, "
                                        r"y_val \(or x_test, y_test\); it has x_train, y_train"):
        load_npz(tmp_path)
    with pytest.raises(DataError, match=r"\[data.path\]: data/none.npz does not exist"):
        load_source(NpzData(source="npz", path="data/none.npz"), tmp_path)
    (tmp_path / "data" / "shapes.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a NumPy .npz file"):
        load_npz(tmp_path)


IRIS = """sepal_length,sepal_width,petal_length,species
5.1,3.5,1.4,setosa
4.9,3.0,1.4,setosa
7.0,3.2,4.7,versicolor
6.4,3.2,4.5,versicolor
6.3,3.3,6.0,virginica
5.8,2.7,5.1,virginica
5.0,3.6,1.4,setosa
6.9,3.1,4.9,versicolor
7.1,3.0,5.9,virginica
5.4,3.9,1.7,setosa
5.5,2.3,4.0,versicolor
6.5,3.0,5.8,virginica
"""


def csv(root: Path, text: str = IRIS, **spec: object) -> Dataset:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "iris.csv").write_text(text)
    options = {"label": "species", "validation_fraction": 0.25, **spec}
    return load_source(CsvData(source="csv", path="data/iris.csv", **options), root)


def test_a_csv_with_text_labels_becomes_named_classes_and_a_stratified_split(tmp_path):
    data = csv(tmp_path)
    assert data.classes == ("setosa", "versicolor", "virginica") and data.kind == "features"
    assert data.input_shape == (3,) and len(data.y_train) == 9 and len(data.y_val) == 3
    assert sorted(data.y_val.tolist()) == [0, 1, 2]  # one of each: stratified
    assert abs(float(data.x_train.mean())) < 1e-6  # standardized by the training rows
    assert "standardized" in data.description and data.name == "iris"
    assert csv(tmp_path).fingerprint == data.fingerprint  # seeded: the same split every time
    assert csv(tmp_path, split_seed=5).fingerprint != data.fingerprint


def test_a_csv_with_a_validation_file_and_declared_classes(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "val.csv").write_text("sepal_length,sepal_width,petal_length,species\n5.0,3.4,1.5,setosa\n")
    data = csv(tmp_path, validation="data/val.csv", validation_fraction=None,
               classes=["virginica", "versicolor", "setosa"], standardize=False)
    assert data.classes == ("virginica", "versicolor", "setosa") and data.y_val.tolist() == [2]
    assert data.x_val.tolist() == [pytest.approx([5.0, 3.4, 1.5])]


@pytest.mark.parametrize(("text", "spec", "expected"), [
    (IRIS, {"label": "kind"}, "no column 'kind' (data.label); its columns are ['sepal_length', 'sepal_width', "
                              "'petal_length', 'species']"),
    (IRIS.replace("3.0,1.4,setosa", "three,1.4,setosa"), {},
     "column 'sepal_width' is not numeric: 'three' on line 3"),
    (IRIS.replace("7.0,3.2,4.7", "7.0,,4.7"), {}, "column 'sepal_width' is empty on line 4; fill it, or set "
                                                   "data.missing"),
    (IRIS.replace("6.4,3.2,4.5,versicolor", "6.4,3.2,4.5,"), {}, "column 'species' (the label) is empty on line 5"),
    (IRIS, {"features": ["petal_width"]}, "no column(s) ['petal_width'] (data.features)"),
    (IRIS, {"classes": ["setosa", "versicolor"]}, "label(s) ['virginica'] not among data.classes"),
    (IRIS, {"validation_fraction": None}, "a csv source needs `validation` (a second file) or "
                                          "`validation_fraction`"),
])
def test_bad_tables_are_named_with_the_column_and_line(tmp_path, text, spec, expected):
    with pytest.raises(DataError) as info:
        csv(tmp_path, text, **spec)
    assert expected in str(info.value)


def test_empty_cells_can_be_dropped_or_filled(tmp_path):
    holey = IRIS.replace("7.0,3.2,4.7", "7.0,,4.7")
    assert len(csv(tmp_path, holey, missing="drop", validation_fraction=0.25).y_train) == 8
    filled = csv(tmp_path, holey, missing="mean", standardize=False)
    assert np.isfinite(filled.x_train).all() and np.isfinite(filled.x_val).all()


def test_the_quick_sample_is_stratified_and_seeded(tmp_path):
    shapes_npz(tmp_path)
    data = load_npz(tmp_path)
    small = sample(data, 12, 6)
    assert np.bincount(small.y_train).tolist() == [4, 4, 4] and np.bincount(small.y_val).tolist() == [2, 2, 2]
    assert sample(data, 12, 6).fingerprint == small.fingerprint and small.classes == data.classes


PROJECT = """
title = "Shapes"
[data]
source = "npz"
path = "data/shapes.npz"
classes = ["circle", "square", "triangle"]
"""


DENSE = 'number = "1"\ntitle = "A"\n[[runs]]\nname = "dense"\nkind = "mlp"\nhidden_layers = [8]\n'
CONV = '[[runs]]\nname = "conv"\nkind = "cnn"\nblocks = [{type = "conv", filters = 4, kernel = 3}]\n'


def test_a_data_table_in_project_toml_is_checked_by_key(make_project):
    root = make_project({"experiments/project.toml": PROJECT.replace('path = "data/shapes.npz"',
                                                                     'path = "data/shapes.npz"\ncolumns = 3'),
                         "experiments/1.toml": DENSE})
    with pytest.raises(SpecError) as info:
        load_project(root)
    assert [p.key for p in info.value.problems if "project.toml" in str(p.file)] == ["data.columns"]
    root = make_project({"experiments/project.toml": 'title = "T"\ndata = "svhn"\n'})
    with pytest.raises(SpecError, match=r"\[data\]: expected one of \['auto', 'mnist', 'mnist-sample', "
                                        r"'fashion_mnist', 'cifar10', 'cifar100'\], or a table with source = "
                                        r"'keras' or 'npz' or 'csv' or 'images', got 'svhn'"):
        load_project(root)


def test_runs_that_need_images_are_refused_on_tabular_data(make_project):
    root = make_project({"experiments/project.toml": PROJECT,
                         "experiments/1.toml": DENSE + CONV})
    project = load_project(root)
    assert project.experiments[0].data == "npz:data/shapes.npz"
    [problem] = data_problems(project, "features", (4,))
    assert str(problem).endswith("[conv.kind]: a cnn convolves images, and the data (npz:data/shapes.npz) are "
                                 "feature vectors of 4 values; expected kind = \"mlp\" (or a custom builder) for "
                                 "tabular data")
    assert data_problems(project, "images", (12, 10, 3)) == []
    quick = load_project(root, "quick")
    assert quick.sample == (2000, 500) and quick.data == project.data


@pytest.mark.slow
def test_a_folder_of_images_per_class_is_read_with_keras_and_split_stratified(tmp_path):
    from PIL import Image

    from reportgen.project.sources import ImageFolderData

    rng = np.random.default_rng(0)
    for label, colour in (("leaf", (30, 160, 40)), ("sky", (60, 120, 230))):
        folder = tmp_path / "data" / "photos" / label
        folder.mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (24, 30, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    data = load_source(ImageFolderData(source="images", path="data/photos", image_size=[16, 16],
                                       validation_fraction=0.2), tmp_path)
    assert data.classes == ("leaf", "sky") and data.input_shape == (16, 16, 3) and data.x_train.dtype == np.uint8
    assert len(data.y_train) == 16 and sorted(data.y_val.tolist()) == [0, 0, 1, 1]
    assert data.x_train[data.y_train == 1][..., 2].mean() > data.x_train[data.y_train == 0][..., 2].mean()  # blue sky
    grey = load_source(ImageFolderData(source="images", path="data/photos", image_size=[8, 8], color_mode="grayscale",
                                       validation_fraction=0.5, classes=["sky", "leaf"]), tmp_path)
    assert grey.input_shape == (8, 8) and grey.classes == ("sky", "leaf")
    assert np.bincount(grey.y_val).tolist() == [5, 5]
    with pytest.raises(DataError, match=r"data.classes \['sky', 'tree'\] do not name its subfolders \['leaf', 'sky'\]"):
        load_source(ImageFolderData(source="images", path="data/photos", validation_fraction=0.5,
                                    classes=["sky", "tree"]), tmp_path)


def test_text_features_become_one_hot_columns_when_asked(tmp_path):
    coloured = IRIS.replace("sepal_length,", "colour,sepal_length,")
    rows = coloured.splitlines()
    rows = [rows[0]] + [("red," if i % 2 else "blue,") + r for i, r in enumerate(rows[1:])]
    data = csv(tmp_path, "\n".join(rows) + "\n", categorical="onehot", standardize=False)
    assert data.input_shape == (5,)  # colour=blue, colour=red and the three measurements
    assert sorted(set(data.x_train[:, 0].tolist()) | set(data.x_val[:, 0].tolist())) == [0.0, 1.0]
    with pytest.raises(DataError, match=r"column 'colour' is not numeric: 'blue' on line 2; .*data.categorical"):
        csv(tmp_path, "\n".join(rows) + "\n")


def test_a_keras_set_is_read_from_a_local_copy_with_its_class_names(tmp_path):
    from reportgen.project.sources import KerasData

    rng = np.random.default_rng(0)
    write_npz(tmp_path / "data" / "cifar10.npz", x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
              y_train=(np.arange(20) % 10)[:, None], x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
              y_test=np.arange(10)[:, None])
    data = load_source(KerasData(source="keras", set="cifar10", path="data/cifar10.npz"), tmp_path)
    assert data.name == "cifar10" and data.input_shape == (32, 32, 3) and data.classes[:3] == \
        ("airplane", "automobile", "bird")
    assert data.y_train.shape == (20,)  # Keras' (N, 1) labels, flattened
    assert "CIFAR-10 colour images" in data.description
