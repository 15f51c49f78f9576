"""The misclassified view: a grid of one run's most confidently misclassified validation images."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Literal

from pydantic import Field

from reportgen.project.spec import ViewSettings
from reportgen.train.result import ClassifierResult
from reportgen.views import describe, figures
from reportgen.views.base import Collected, ViewInputs, ViewKind


class Settings(ViewSettings):
    """A grid of misclassified validation images of one run."""

    kind: Literal["misclassified"]
    run: str
    count: Annotated[int, Field(gt=0, le=100)] = 36

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        if self.run in refused or self.run in kinds:  # a refused run's own problem is reported already
            return []
        return [("run", f"expected one of this section's runs {sorted(kinds)}, got {self.run!r}")]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        if settings.run not in inputs.facts:
            return Collected({})
        entry = inputs.entries[settings.run]
        if entry is None or not isinstance(entry.result, ClassifierResult):  # a GAN misclassifies nothing
            return Collected({})
        miss = entry.result.misclassified
        images = entry.arrays().get("misclassified_images")
        out: dict[str, Any] = {}
        if images is not None and len(images):
            figures.save(inputs.assets / inputs.figure, figures.misclassified_grid, images, miss.true, miss.predicted,
                         miss.confidence, settings.count, inputs.classes)
            shown = min(settings.count, len(images))
            out.update(figure=f"assets/{inputs.figure}",
                       alt=describe.misclassified(settings.run, miss.true, miss.predicted, miss.confidence, shown,
                                                  miss.count, miss.total, inputs.classes, inputs.percent_digits))
        out.update(run=settings.run, count=min(settings.count, miss.count), total=miss.count,
                   of=miss.total)
        return Collected(out)


VIEW = Kind("misclassified", Settings)
