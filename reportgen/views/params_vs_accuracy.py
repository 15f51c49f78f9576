"""The params_vs_accuracy view: each run's parameter count against its final validation accuracy,
and the smallest model at or above a threshold."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from reportgen.project.formats import share
from reportgen.project.spec import ViewSettings
from reportgen.views import analysis, describe, figures
from reportgen.views.base import Collected, ViewInputs, ViewKind


class Settings(ViewSettings):
    """Parameters against final validation accuracy, with a threshold line."""

    kind: Literal["params_vs_accuracy"]
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.97


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        section_facts = inputs.section_facts
        if not section_facts:
            return Collected({})
        measured = analysis.params_threshold(section_facts, settings.threshold)
        entry: dict[str, Any] = {}
        intervals = {r["name"]: r["ci"] for r in measured["rows"] if r["ci"] is not None}
        points = [{"label": f["name"], "params": f["params"], "val_accuracy": f["val_accuracy"],
                   "low": intervals[f["name"]][0] if f["name"] in intervals else None,
                   "high": intervals[f["name"]][1] if f["name"] in intervals else None}
                  for f in section_facts if f.get("val_accuracy") is not None]
        if points:  # none when every run failed or diverged: nothing to draw
            figures.save(inputs.assets / inputs.figure, figures.params_vs_accuracy, points, settings.threshold)
            entry["figure"] = f"assets/{inputs.figure}"
            entry["alt"] = describe.params_vs_accuracy(points, settings.threshold, share(settings.threshold),
                                                       inputs.percent_digits)
        entry["measured"] = measured
        return Collected(entry, measured)


VIEW = Kind("params_vs_accuracy", Settings)
