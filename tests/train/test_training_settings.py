"""The training settings courses use, as they train: optimizer arguments, learning-rate schedules,
early stopping, and a custom builder's own compile, kept and said, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import RunError
from reportgen.project.spec import CustomSpec, Experiment, MLPSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images():
    from reportgen.project import data, dataset

    return dataset.subset(data.load("mnist-sample"), 512, 128)


def run(images, tmp_path: Path, name: str = "r", notes: list[str] | None = None, **settings):
    from reportgen.train import outcome
    from reportgen.train import run as training

    class Notes(outcome.SilentReporter):
        def note(self, message: str) -> None:
            (notes if notes is not None else []).append(message)

    kind = settings.pop("kind", "mlp")
    model = (CustomSpec(kind="custom", **settings) if kind == "custom" else
             MLPSpec(kind="mlp", **{"hidden_layers": [16], "epochs": 2, "batch_size": 64, "seed": 3, **settings}))
    exp = Experiment(name=name, section="1", model=model, data="mnist-sample", source=tmp_path / "1.toml")
    return training.train(exp, images, tmp_path / "experiments", Notes()).result


def test_momentum_and_nesterov_change_training_and_are_recorded(images, tmp_path):
    plain = run(images, tmp_path, optimizer="sgd", learning_rate=0.05)
    heavy = run(images, tmp_path, optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True)
    assert heavy.history["loss"] != plain.history["loss"]
    assert heavy.optimizer == {"class": "SGD", "from": "the run's settings", "momentum": 0.9, "nesterov": True,
                               "learning_rate": pytest.approx(0.05)}
    assert plain.optimizer["class"] == "SGD" and "nesterov" not in plain.optimizer


def test_a_step_schedule_lowers_the_rate_and_is_recorded(images, tmp_path):
    steady = run(images, tmp_path, optimizer="sgd", learning_rate=0.1, epochs=3)
    stepped = run(images, tmp_path, optimizer="sgd", learning_rate=0.1, epochs=3,
                  schedule={"type": "step", "every": 1, "factor": 0.1})
    assert stepped.history["loss"][0] == pytest.approx(steady.history["loss"][0])  # the same first epoch
    assert stepped.history["loss"][2] != pytest.approx(steady.history["loss"][2])
    assert stepped.optimizer["learning_rate"] == "PiecewiseConstantDecay"


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(images, tmp_path):
    # No epoch improves the loss by 10: the first is the best, the run stops after the second.
    stopped = run(images, tmp_path, epochs=6, early_stopping={"monitor": "loss", "patience": 0, "min_delta": 10.0})
    assert stopped.epochs_run == 2 and len(stopped.history["loss"]) == 2
    assert stopped.early_stopping is not None
    assert (stopped.early_stopping.stopped_epoch, stopped.early_stopping.best_epoch,
            stopped.early_stopping.restored) == (2, 1, True)
    one_epoch = run(images, tmp_path, epochs=1)
    assert stopped.weights_sha256 == one_epoch.weights_sha256  # the first epoch's weights, restored
    assert stopped.final["val_accuracy"] == stopped.history["val_accuracy"][0]
    patient = run(images, tmp_path, epochs=2, early_stopping={"patience": 5})
    assert patient.early_stopping.stopped_epoch is None and patient.epochs_run == 2


BUILDERS = """
import keras


def dense(loss="sparse_categorical_crossentropy"):
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(16),
                              keras.layers.Activation("relu"), keras.layers.Dense(10),
                              keras.layers.Activation("softmax", dtype="float32")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9), loss=loss)
    return model
"""


def test_a_builder_that_compiles_its_model_keeps_its_optimizer_and_says_so(images, tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "nets.py").write_text(BUILDERS)
    notes: list[str] = []
    built = run(images, tmp_path, notes=notes, kind="custom", builder="nets:dense", epochs=2, batch_size=64, seed=3)
    declared = run(images, tmp_path, optimizer="sgd", learning_rate=0.05, momentum=0.9)
    assert built.optimizer["class"] == "SGD" and built.optimizer["momentum"] == pytest.approx(0.9)
    assert built.optimizer["from"] == "the builder's compile"
    assert built.history["loss"] == pytest.approx(declared.history["loss"], rel=1e-6)  # momentum was used
    assert any("experiments/nets.py compiled its own model; its optimizer SGD is kept" in n for n in notes)
    with pytest.raises(RunError, match=r"experiments/nets.py compiles its model with the loss "
                                       r"'categorical_crossentropy'; the labels are class numbers"):
        run(images, tmp_path, kind="custom", builder="nets:dense", params={"loss": "categorical_crossentropy"},
            epochs=1, batch_size=64, seed=3)


def test_dropout_and_batch_norm_per_layer_are_in_the_model(images, tmp_path):
    result = run(images, tmp_path, hidden_layers=[32, 16], dropout=[0.5, 0.0], batch_norm=True)
    types = [layer.type for layer in result.summary.layers]
    assert types == ["Flatten", "Dense", "BatchNormalization", "Activation", "Dropout", "Dense", "BatchNormalization",
                     "Activation", "Dense", "Activation"]  # no Dropout where the rate is 0
    assert result.status == "ok" and result.final["val_accuracy"] > 0.2  # it learns (chance: 0.1)
