"""The confusion view: one classifier's validation images by true and predicted class, with each
class's precision and recall, under the data set's class names."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from reportgen.project.spec import CLASSIFIER_KINDS, ViewSettings
from reportgen.train.result import ClassifierResult
from reportgen.views import analysis, describe, figures
from reportgen.views.base import Collected, ViewInputs, ViewKind


class Settings(ViewSettings):
    """A confusion matrix and per-class precision and recall of one classifier run."""

    kind: Literal["confusion"]
    run: str

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        if self.run in refused or kinds.get(self.run) in CLASSIFIER_KINDS:
            return []
        classifiers = sorted(n for n, k in kinds.items() if k in CLASSIFIER_KINDS)
        return [("run", f"expected one of this section's classifier runs {classifiers}, got {self.run!r}")]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        entry = inputs.entries.get(settings.run)
        if entry is None or not isinstance(entry.result, ClassifierResult):
            return Collected({"run": settings.run, "diverged": False})  # no result yet: nothing to show
        miss = entry.result.misclassified
        if miss.total != len(inputs.validation_labels) or len(miss.indices) != miss.count:
            # A run whose outputs were not finite (diverged) predicted nothing to count.
            return Collected({"run": settings.run, "diverged": True})
        measured = analysis.confusion(inputs.validation_labels, miss.indices, miss.predicted, inputs.classes)
        measured["run"] = settings.run
        figures.save(inputs.assets / inputs.figure, figures.confusion, measured["matrix"], inputs.classes, settings.run)
        alt = describe.confusion(settings.run, measured["matrix"], inputs.classes, inputs.percent_digits)
        return Collected({"measured": measured, "figure": f"assets/{inputs.figure}", "run": settings.run, "alt": alt},
                         measured)

    def add_facts(self, view_facts: dict[str, Any], settings: Settings, facts: Any) -> None:
        view_facts.setdefault(self.kind, {})[settings.run] = facts  # one per run: views.confusion["cnn"].recall


VIEW = Kind("confusion", Settings)
