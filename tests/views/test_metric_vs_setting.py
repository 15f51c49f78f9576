"""A metric against a setting: the scale follows the values, a builder's parameter counts as a
setting, and the best run is named."""

from __future__ import annotations

import pytest

from reportgen.views.base import ViewInputs
from reportgen.views.metric_vs_setting import VIEW, Settings, scale_for


@pytest.mark.parametrize(("values", "scale"), [
    ([1e-4, 1e-3, 1e-2, 1.0], "log"),
    ([0.0, 1e-8, 1e-4, 1.0], "symlog"),  # lambda = 0 beside lambdas spanning decades
    ([16, 32, 64], "linear"),
    ([-1.0, 10.0, 1000.0], "linear"),
])
def test_the_scale_follows_the_values(values, scale):
    assert scale_for(values, "auto") == scale


def facts(name, strength, accuracy, **config):
    return {"name": name, "val_accuracy": accuracy, "val_loss": 1 - accuracy,
            "config": {"strength": strength, "activation": "relu", **config}}


def inputs(tmp_path, runs, classifiers=None):
    return ViewInputs(assets=tmp_path, figure="1-metric.svg", section="1", runs=tuple(runs),
                      facts=runs, classifiers=frozenset(classifiers or runs), entries={}, measures={},
                      validation_images=None)


def test_accuracy_against_the_l2_strength_names_the_best_run(tmp_path):
    runs = {"l2-0": facts("l2-0", 0.0, 0.95), "l2-1e-4": facts("l2-1e-4", 1e-4, 0.97),
            "l2-1": facts("l2-1", 1.0, 0.11), "gan": {"name": "gan", "config": {}}}
    view = Settings(kind="metric_vs_setting", setting="strength")
    collected = VIEW.collect(view, inputs(tmp_path, runs, ["l2-0", "l2-1e-4", "l2-1"]))
    measured = collected.facts
    assert measured["scale"] == "symlog" and measured["best"]["name"] == "l2-1e-4"
    assert [p["x"] for p in measured["points"]] == [0.0, 1e-4, 1.0]
    svg = (tmp_path / "1-metric.svg").read_text()
    assert "strength (log scale)" in svg
    lowest = VIEW.collect(Settings(kind="metric_vs_setting", setting="strength", metric="val_loss"),
                          inputs(tmp_path, runs, ["l2-0", "l2-1e-4", "l2-1"])).facts
    assert lowest["best"]["name"] == "l2-1e-4"  # the lowest loss, not the highest


def test_a_builders_parameter_is_a_setting_and_a_missing_one_is_said(tmp_path):
    runs = {"d1": facts("d1", 0.0, 0.9, params={"dropout": 0.1}),
            "d5": facts("d5", 0.0, 0.8, params={"dropout": 0.5})}
    measured = VIEW.collect(Settings(kind="metric_vs_setting", setting="dropout"), inputs(tmp_path, runs)).facts
    assert measured["scale"] == "linear" and measured["best"]["name"] == "d1"
    empty = VIEW.collect(Settings(kind="metric_vs_setting", setting="width"), inputs(tmp_path, runs))
    assert empty.facts is None and empty.entry == {"setting": "width", "empty": True}
