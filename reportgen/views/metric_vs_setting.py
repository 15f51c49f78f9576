"""The metric-against-setting view: one metric of the section's classifier runs against the value of
one of their settings (a grid axis, a builder's parameter), on a log scale when the values span
decades, one line per value of a second setting."""

from __future__ import annotations

import math
from typing import Literal

from reportgen.project.spec import ViewSettings
from reportgen.views import describe, figures
from reportgen.views.analysis import setting_of
from reportgen.views.base import Collected, ViewInputs, ViewKind

LOWER_IS_BETTER = ("val_loss", "loss")


class Settings(ViewSettings):
    """A metric against a numeric setting, e.g. validation accuracy against the L2 strength."""

    kind: Literal["metric_vs_setting"]
    setting: str
    metric: Literal["val_accuracy", "accuracy", "val_loss", "loss", "best_val_accuracy"] = "val_accuracy"
    group: str | None = None  # one line per value of this setting
    scale: Literal["auto", "linear", "log"] = "auto"


def scale_for(values: list[float], asked: str) -> str:
    """"log" when every value is positive and they span two decades or more; "symlog" when zero is
    among such values (zero sits at the left, the rest on a log scale); else "linear"."""
    if asked != "auto":
        return asked if asked == "linear" or min(values) > 0 else "symlog"
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or max(positive) / min(positive) < 100 or min(values) < 0:
        return "linear"
    return "log" if len(positive) == len(values) else "symlog"


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        points = []
        for name in inputs.runs:
            if name not in inputs.classifiers:
                continue
            facts = inputs.facts[name]
            x, y = setting_of(facts["config"], settings.setting), facts.get(settings.metric)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or y is None or not math.isfinite(y):
                continue
            group = setting_of(facts["config"], settings.group) if settings.group else None
            ci = getattr(y, "ci", None)  # over repeats
            points.append({"name": name, "x": x, "y": y, "group": group, "n": getattr(y, "n", 1),
                           "low": ci[0] if ci else None, "high": ci[1] if ci else None})
        if not points:
            return Collected({"setting": settings.setting, "empty": bool(inputs.section_facts)})
        scale = scale_for([p["x"] for p in points], settings.scale)
        figures.save(inputs.assets / inputs.figure, figures.metric_vs_setting, points, settings.setting,
                     settings.metric, scale, settings.group)
        lower = settings.metric in LOWER_IS_BETTER
        picked = inputs.winner([p["name"] for p in points], settings.metric, lower)
        best = next(p for p in points if p["name"] == picked["best"])
        against = picked["against_runner_up"]
        measured = {"setting": settings.setting, "metric": settings.metric, "scale": scale, "points": points,
                    "best": best, "runner_up": picked["runner_up"], "tied": picked["tied"],
                    "distinct": picked["distinct"], "against_runner_up": str(against) if against else None,
                    "against_short": against.short if against else None,
                    "test": against.test if against else None, "repeats": max(p["n"] for p in points)}
        alt = describe.metric_vs_setting(points, settings.setting, settings.metric, scale, inputs.percent_digits)
        return Collected({"measured": measured, "figure": f"assets/{inputs.figure}", "alt": alt}, measured)


VIEW = Kind("metric_vs_setting", Settings)
