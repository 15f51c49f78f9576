"""The convergence view: measured epochs to converge of the section's runs (and any it compares)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Annotated, Literal

from pydantic import Field

from reportgen.project.spec import ViewSettings
from reportgen.views import analysis
from reportgen.views.base import Collected, ViewInputs, ViewKind


class Settings(ViewSettings):
    """Measured epochs to converge: the first epoch whose validation accuracy reaches `threshold`
    when one is given, else the first within `tolerance` of that run's best; grouped by `group`
    (default: what the runs vary)."""

    kind: Literal["convergence"]
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.005
    threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    group: str | None = None
    compare: list[str] = Field(default_factory=list)  # runs of other sections to measure alongside

    def project_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        return [("compare", f"expected a run name declared in experiments/, got {name!r}")
                for name in self.compare if name not in kinds]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        names = [*inputs.runs, *settings.compare]
        measured = analysis.convergence([inputs.facts[n] for n in names if n in inputs.classifiers],
                                        settings.tolerance, settings.threshold, settings.group)
        return Collected({"measured": measured}, measured)


VIEW = Kind("convergence", Settings)
