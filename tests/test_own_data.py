"""Projects unlike the coursework, end to end: a 3-class colour image set of the test's own making in
an .npz (not 28x28), and a table in a CSV file with text labels. Then a bad data file: an error
before anything trains, and the cache and the last report as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from reportgen.cli import app

from .conftest import build_or_fail, read_manifest, write_project

pytestmark = pytest.mark.slow

SHAPES_PROJECT = """
title = "Coloured shapes"
author = "A. Student"
[data]
source = "npz"
name = "Shapes"
path = "data/shapes.npz"
classes = ["red", "green", "blue"]
[defaults]
epochs = 2
batch_size = 32
seed = 3
"""

SHAPES_SECTION = """
number = "1"
title = "Which net tells the colours apart"
[[runs]]
name = "dense"
kind = "mlp"
hidden_layers = [16]
[[runs]]
name = "conv"
kind = "cnn"
blocks = [{ type = "conv", filters = 4, kernel = 3 }, { type = "pool", size = 2 }]
[[views]]
kind = "misclassified"
run = "dense"
count = 9
[[views]]
kind = "confusion"
run = "conv"
"""


def colour_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x12 RGB images of three classes, each brighter in its own channel, with noise enough that
    a net must learn it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 140, (n, 16, 12, 3))
    x[np.arange(n), :, :, y] += 90
    return x.astype(np.uint8), y


def shapes_project(root: Path) -> Path:
    x_train, y_train = colour_set(240, 0)
    x_val, y_val = colour_set(60, 1)
    (root / "data").mkdir(parents=True)
    np.savez(root / "data" / "shapes.npz", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    return write_project(root, {
        "experiments/project.toml": SHAPES_PROJECT, "experiments/1-colours.toml": SHAPES_SECTION,
        "experiments/1-colours.md": "The dense net reaches {{ runs['dense'].val_accuracy | pct }} on "
                                    "{{ runs['dense'].validation_size }} validation images and finds "
                                    "{{ runs['dense'].recall['red'] | pct }} of the red ones. The convolutional "
                                    "net finds {{ section.views.confusion['conv'].recall['blue'] | pct }} of "
                                    "the blue ones.\n"})


def pdf_text(root: Path) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(root / "build" / "report.pdf").pages).split())


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = shapes_project(tmp_path_factory.mktemp("shapes") / "project")
    build_or_fail(root, [])
    return root


def test_a_colour_image_set_of_ones_own_builds_and_is_named_truthfully(shapes):
    text = pdf_text(shapes)
    assert "Data set Shapes: 240 training and 60 validation examples of shape 16x12x3, 3 classes (data/shapes.npz)" \
        in text
    assert "Inputs 16×12×3 images; 8-bit pixels (0 to 255), divided by 255" in text
    assert "Classes 3: red, green, blue" in text
    manifest = read_manifest(shapes)
    data = manifest["data"]
    assert (data["name"], data["source"], data["shape"], data["classes"]) == \
        ("Shapes", "data/shapes.npz", [16, 12, 3], ["red", "green", "blue"])
    accuracy = next(e for e in manifest["experiments"] if e["name"] == "dense")["metrics"]["val_accuracy"]
    assert f"The dense net reaches {accuracy:.2%} on 60 validation images and finds " in text
    assert "% of the red ones." in text
    assert accuracy > 0.5  # the colours are learnable: better than chance (1/3)
    # Both kinds took the data's shape and three outputs.
    html = (shapes / "build" / "report.html").read_text()
    assert "(None, 16, 12, 3)" not in html or "Conv2D" in html
    assert html.count("(None, 3)") >= 2
    # The confusion matrix and the per-class table name the classes; commentary quotes a recall.
    matrix = (shapes / "build" / "assets" / "1-colours-confusion-1.svg").read_text()
    assert all(name in matrix for name in ("red", "green", "blue"))
    assert "Validation images of conv by class" in text and "Class Images Precision Recall" in text
    assert "The convolutional net finds " in text and "% of the blue ones." in text
    # The misclassified grid names the classes.
    grid = next((shapes / "build" / "assets").glob("1-colours-misclassified-0.svg")).read_text()
    assert "→" in grid and any(f"{a}→{b}" in grid for a in ("red", "green", "blue") for b in ("red", "green", "blue"))


def _label_past_the_classes(arrays: dict) -> None:
    arrays["y_train"][17] = 3


def _scales_mixed(arrays: dict) -> None:
    arrays["x_val"] = arrays["x_val"] / 255.0


def _a_nan(arrays: dict) -> None:
    arrays["x_train"] = arrays["x_train"] / 255.0
    arrays["x_train"][5, 0, 0, 0] = np.nan
    arrays["x_val"] = arrays["x_val"] / 255.0


def _lengths_differ(arrays: dict) -> None:
    arrays["y_val"] = arrays["y_val"][:-1]


def _a_key_missing(arrays: dict) -> None:
    del arrays["y_val"]


@pytest.mark.parametrize(("damage", "expected"), [
    (_label_past_the_classes, "data/shapes.npz: label 3 is out of range: 3 classes (red, green, blue) take labels "
                              "0 to 2"),
    (_scales_mixed, "data/shapes.npz: x_train is 8-bit (0 to 255) but x_val is floats (0 to 1)"),
    (_a_nan, "data/shapes.npz: x_train has NaN or infinite pixel values (first at image 5)"),
    (_lengths_differ, "data/shapes.npz: y_val has 59 labels but x_val has 60 examples"),
    (_a_key_missing, "shapes.npz: missing array(s) y_val"),
])
def test_a_bad_data_file_stops_before_training_and_keeps_the_cache_and_the_report(shapes, tmp_path, damage,
                                                                                  expected):
    import shutil

    root = tmp_path / "project"
    shutil.copytree(shapes, root)
    report = (root / "build" / "report.pdf").read_bytes()
    entries = sorted(p.name for p in (root / ".reportgen-cache" / "results").iterdir())
    x_train, y_train = colour_set(240, 0)
    x_val, y_val = colour_set(60, 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    damage(arrays)
    np.savez(root / "data" / "shapes.npz", **arrays)
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["build", "-C", str(root)])
    assert result.exit_code == 1, result.output
    assert expected in " ".join(result.output.split())
    assert "Error: " in result.output and "Traceback" not in result.output
    assert (root / "build" / "report.pdf").read_bytes() == report
    assert sorted(p.name for p in (root / ".reportgen-cache" / "results").iterdir()) == entries


def test_tabular_data_rejects_a_cnn_before_training(shapes, tmp_path):
    root = write_project(tmp_path / "tab", {
        "experiments/project.toml": TABLE_PROJECT, "experiments/1-table.toml": SHAPES_SECTION,
        "experiments/1-table.md": "Text.\n", "data/plants.csv": plants_csv()})
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["build", "-C", str(root)])
    assert result.exit_code == 1, result.output
    assert "[conv.kind]: a cnn convolves images, and the data (csv:data/plants.csv) are feature vectors of 4 " \
           "values" in " ".join(result.output.split())
    assert "Nothing was trained" in result.output and not (root / ".reportgen-cache" / "results").exists() or \
        not any((root / ".reportgen-cache" / "results").iterdir())


TABLE_PROJECT = """
title = "Plants from measurements"
[data]
source = "csv"
path = "data/plants.csv"
label = "species"
validation_fraction = 0.25
[defaults]
epochs = 3
batch_size = 16
seed = 2
"""

TABLE_SECTION = """
number = "1"
title = "A dense net on four measurements"
[[runs]]
name = "dense"
kind = "mlp"
hidden_layers = [16]
learning_rate = 0.01
[[runs]]
name = "patient"
kind = "mlp"
hidden_layers = [16]
learning_rate = 0.01
epochs = 40
early_stopping = { monitor = "val_loss", patience = 2, min_delta = 0.02 }
[[views]]
kind = "convergence"
threshold = 0.8
"""


def plants_csv(n: int = 160) -> str:
    """Four measurements of three species, each species around its own centre."""
    rng = np.random.default_rng(4)
    centres = {"fern": [1.0, 5.0, 0.5, 2.0], "moss": [3.0, 1.0, 2.5, 0.5], "reed": [5.0, 3.0, 4.5, 4.0]}
    rows = ["height,width,leaf,stem,species"]
    for i in range(n):
        species = list(centres)[i % 3]
        values = np.array(centres[species]) + rng.normal(0, 0.6, 4)
        rows.append(",".join(f"{v:.2f}" for v in values) + f",{species}")
    return "\n".join(rows) + "\n"


def test_a_table_with_text_labels_builds_end_to_end(tmp_path):
    root = write_project(tmp_path / "plants", {
        "experiments/project.toml": TABLE_PROJECT, "experiments/1-table.toml": TABLE_SECTION,
        "experiments/1-table.md": "On {{ runs['dense'].validation_size }} held-out plants the net is right "
                                  "{{ runs['dense'].val_accuracy | pct }} of the time. Given 40 epochs, the "
                                  "patient net stopped after epoch {{ runs['patient'].stopped_epoch }} and first "
                                  "reached 80% at epoch {{ runs['patient'] | epoch_reaching(0.8) }}.\n",
        "data/plants.csv": plants_csv()})
    build_or_fail(root, [])
    text = pdf_text(root)
    assert "Inputs vectors of 4 features; feature values as given" in text
    assert "Classes 3: fern, moss, reed" in text
    assert "standardized by the training rows' mean and deviation" in text
    manifest = read_manifest(root)
    accuracy = manifest["experiments"][0]["metrics"]["val_accuracy"]
    assert f"On 40 held-out plants the net is right {accuracy:.2%} of the time." in text
    assert accuracy > 0.8  # well-separated species
    # Early stopping and a question about epochs, answered from the stored per-epoch history.
    import json

    patient = next(e for e in manifest["experiments"] if e["name"] == "patient")
    stored = json.loads((root / ".reportgen-cache" / "results" / patient["key"] / "result.json").read_text())
    stopped = stored["early_stopping"]["stopped_epoch"]
    assert stopped is not None and stopped < 40 and len(stored["history"]["val_accuracy"]) == stopped
    first = next(i for i, v in enumerate(stored["history"]["val_accuracy"], start=1) if v >= 0.8)
    assert f"the patient net stopped after epoch {stopped} and first reached 80% at epoch {first}." in text
    assert f"Early stopping (val_loss) ended training after epoch {stopped}, keeping the weights of epoch" in text
    assert "Measured as the first epoch whose validation accuracy reaches 80%" in text  # as written: 0.8


def test_verify_reruns_a_build_on_ones_own_data(shapes):
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["verify", str(shapes / "build")])
    assert result.exit_code == 0, result.output
    assert "on data Shapes" in result.output and "All 2 verified experiments reproduce" in result.output
    assert "bit-identical weights" in result.output and "weights differ" not in result.output
