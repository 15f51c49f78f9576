"""The overlay view: every classifier run's curves of one metric on one plot, one plot per metric."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from reportgen.project.spec import ViewSettings
from reportgen.views import describe, figures
from reportgen.views.analysis import mean_curves
from reportgen.views.base import Collected, ViewInputs, ViewKind


class Settings(ViewSettings):
    """Every run's curves of one metric on one plot."""

    kind: Literal["overlay"]
    metrics: Annotated[
        list[Literal["accuracy", "val_accuracy", "loss", "val_loss"]], Field(min_length=1)
    ] = ["val_accuracy", "val_loss"]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        if not inputs.section_facts:
            return Collected({})
        curves = {n: mean_curves(inputs.facts[n], inputs.history(n)) for n in inputs.runs if n in inputs.classifiers}
        histories = {n: history for n, (history, _) in curves.items()}  # over repeats: the mean
        figs = []
        for metric in settings.metrics:
            name = f"{inputs.section}-overlay-{metric}.svg"
            groups = describe.coinciding(histories, metric)
            bands = {n: b[metric] for n, (_, b) in curves.items() if metric in b}
            figures.save(inputs.assets / name, figures.overlay, histories, metric, groups, bands)
            figs.append({"metric": metric, "figure": f"assets/{name}", "coincide": describe.coincide_sentence(groups),
                         "alt": describe.overlay(histories, metric, groups, inputs.percent_digits)})
        return Collected({"figures": figs})


VIEW = Kind("overlay", Settings)
