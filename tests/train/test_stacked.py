"""A dense run's repeats trained stacked in one program give each repeat what its own run gives, up to
the last bits of rounding; what cannot be stacked, or diverges, trains one by one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from reportgen.project.data import load_source
from reportgen.project.dataset import subset
from reportgen.project.spec import load_project
from reportgen.train.run import stackable, train, train_repeats
from tests.conftest import EXPLODING_RUN, build_or_fail

pytestmark = pytest.mark.slow

SECTION = """
number = "1"
title = "Repeated"
[[runs]]
name = "net"
kind = "mlp"
hidden_layers = [24, 12]
regularizer = "l2"
strength = 1e-4
epochs = 3
batch_size = 50
repeats = 3
"""


def _weights(outcome):
    """The layers' weights in a result's weights file (a separate run's also holds its optimizer's state)."""
    import io

    import h5py

    with h5py.File(io.BytesIO(outcome.files["model.weights.h5"]), "r") as f:
        found = []
        f.visititems(lambda name, item: found.append(np.asarray(item))
                     if isinstance(item, h5py.Dataset) and name.startswith("layers/") else None)
        return found


@pytest.mark.parametrize("layers", ["[24, 12]", "[32, 12]"])  # the first kernel shared, or a variable of its own
def test_each_stacked_repeat_matches_the_separate_run_of_its_seed(make_project, layers):
    from reportgen.train.tf_stacked import ALONE

    assert (3 * 784 * 24 <= ALONE) and (3 * 784 * 32 > ALONE)
    root = make_project({"experiments/1.toml": SECTION.replace("[24, 12]", layers)})
    exps = load_project(root).experiments[0].with_repeats()
    data = subset(load_source("mnist-sample", root, None), 600, 200)
    assert stackable(exps) is None
    separate = [train(e, data, root / "experiments") for e in exps]
    stacked = train_repeats(exps, data, root / "experiments")
    assert [o.result.name for o in stacked] == ["net", "net#2", "net#3"]
    assert len({o.result.config["seed"] for o in stacked}) == 3
    for alone, together in zip(separate, stacked, strict=True):
        a, b = alone.result, together.result
        assert b.determinism["stacked_repeats"] == 3 and b.config == a.config
        assert b.summary == a.summary and b.steps_trained == a.steps_trained == 3 * 12
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert b.history[metric] == pytest.approx(a.history[metric], rel=1e-4, abs=1e-5), metric
        assert abs(b.misclassified.count - a.misclassified.count) <= 1
        for wa, wb in zip(_weights(alone), _weights(together), strict=True):
            np.testing.assert_allclose(wb, wa, rtol=1e-3, atol=1e-5)
    # Different seeds: different networks, not three copies of one.
    assert len({o.result.weights_sha256 for o in stacked}) == 3


def test_what_cannot_be_stacked_says_why(make_project):
    root = make_project({"experiments/1.toml": SECTION.replace('strength = 1e-4', 'strength = 1e-4\ndropout = 0.2')})
    exps = load_project(root).experiments[0].with_repeats()
    assert stackable(exps) == "dropout"
    assert stackable(exps[:1]) == "a single run"
    changed = [exps[0], dataclasses.replace(exps[1], model=exps[1].model.model_copy(update={"epochs": 1}))]
    assert stackable(changed) == "repeats of different settings"


def test_a_build_stacks_the_repeats_and_a_diverging_one_falls_back_to_separate_runs(make_project):
    exploding = EXPLODING_RUN.replace('name = "explodes"', 'name = "explodes"\nrepeats = 2')
    root = make_project({"experiments/1.toml": SECTION.replace("epochs = 3", "epochs = 1") + exploding})
    output = build_or_fail(root, ["--limit-train", "600", "--limit-val", "200"])
    assert "net (3 repeats, stacked)" in output or "stacked" in output
    assert "explodes: repeat 1 diverged" in output and "training them one by one" in output
    rows = {r["name"]: r for r in json.loads((root / "build" / "results.json").read_text())["experiments"]}
    assert rows["explodes"]["status"] == rows["explodes#2"]["status"] == "diverged"
    assert [rows[n]["status"] for n in ("net", "net#2", "net#3")] == ["ok", "ok", "ok"]


@pytest.mark.parametrize("settings", ["", 'activation = "tanh"\nregularizer = "l1"\nstrength = 1e-3'])
def test_repeats_start_from_the_weights_their_own_models_would_start_from(make_project, settings):
    from reportgen.project.settings import Environment
    from reportgen.train import models
    from reportgen.train.machine import set_seeds

    section = SECTION.replace('regularizer = "l2"\nstrength = 1e-4\n', settings + "\n")
    root = make_project({"experiments/1.toml": section})
    for exp in load_project(root).experiments[0].with_repeats():
        set_seeds(exp.model.seed, Environment())
        drawn = models.initial_weights(exp, shape=(28, 28), classes=10)
        set_seeds(exp.model.seed, Environment())
        built = models.build(exp, root / "experiments", shape=(28, 28), classes=10).get_weights()
        assert [w.shape for w in drawn] == [w.shape for w in built] == [(784, 24), (24,), (24, 12), (12,), (12, 10),
                                                                        (10,)]
        for a, b in zip(drawn, built, strict=True):
            np.testing.assert_array_equal(a, b)


def test_when_drawn_weights_differ_from_a_built_model_every_repeat_is_built(make_project, monkeypatch):
    from reportgen.train import models

    root = make_project({"experiments/1.toml": SECTION.replace("epochs = 3", "epochs = 1")})
    exps = load_project(root).experiments[0].with_repeats()
    data = subset(load_source("mnist-sample", root, None), 300, 100)
    honest = [o.result.weights_sha256 for o in train_repeats(exps, data, root / "experiments")]
    drawn = models.initial_weights
    monkeypatch.setattr(models, "initial_weights", lambda *a, **k: [w + 1.0 for w in drawn(*a, **k)])
    assert [o.result.weights_sha256 for o in train_repeats(exps, data, root / "experiments")] == honest
