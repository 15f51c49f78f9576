"""The gan_training view: how one GAN trained, as the answer to a question about it: both losses
per epoch, images from the same fixed noise as training went on, and the last epoch's samples."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from reportgen.project.spec import ViewSettings
from reportgen.train.result import GanResult
from reportgen.train.store import Entry
from reportgen.views import describe, figures
from reportgen.views.base import Collected, ViewInputs, ViewKind

PROGRESS_ROWS = 5  # epochs shown in the sample-progress figure


class Settings(ViewSettings):
    """One GAN run's losses and samples."""

    kind: Literal["gan_training"]
    run: str
    # Images of the last epoch shown large in a grid of their own (0: none; the progress figure's last
    # row already shows that epoch).
    final_samples: Annotated[int, Field(ge=0, le=100)] = 0

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        if self.run in refused:
            return []
        gans = sorted(n for n, k in kinds.items() if k == "gan")
        if kinds.get(self.run) == "gan":
            return []
        return [("run", f"expected one of this section's GAN runs {gans}, got {self.run!r}")]


def pick_epochs(epochs: list[int], count: int = PROGRESS_ROWS) -> list[int]:
    """First, last and evenly spaced epochs between: the rows of a sample-progress figure."""
    if len(epochs) <= count:
        return list(epochs)
    picks = {round(i * (len(epochs) - 1) / (count - 1)) for i in range(count)}
    return [epochs[i] for i in sorted(picks)]


def draw(name: str, entry: Entry[Any], assets: Path, final: int = 36, digits: int = 2) -> dict[str, Any]:
    """A GAN run's figures (losses, sample progress, last samples), drawn into assets; the keys the
    templates show them by (None where the run has nothing to draw)."""
    result = entry.result
    assert isinstance(result, GanResult)
    history = result.history
    samples = entry.arrays()["samples"]
    item: dict[str, Any] = {"losses": None, "progress": None, "final_samples": None}
    if history.get("epoch"):
        figures.save(assets / f"gan-losses-{name}.svg", figures.gan_losses, name, history)
        item.update(losses=f"assets/gan-losses-{name}.svg", losses_alt=describe.gan_losses(name, history, digits))
    if len(samples):
        epochs = [int(e) for e in history["epoch"]]
        chosen = pick_epochs(epochs)
        rows = [samples[epochs.index(e)] for e in chosen]
        figures.save(assets / f"gan-progress-{name}.svg", figures.sample_progress, np.stack(rows), chosen)
        item.update(progress=f"assets/gan-progress-{name}.svg", progress_epochs=chosen,
                    final_epoch=int(history["epoch"][-1]),
                    progress_alt=describe.sample_progress(name, chosen, min(figures.PROGRESS_PER_ROW, len(rows[0]))))
        if final:
            shown = samples[-1][:final]
            figures.save(assets / f"gan-samples-{name}.svg", figures.sample_grid, shown)
            item.update(final_samples=f"assets/gan-samples-{name}.svg", final_count=len(shown),
                        final_alt=describe.sample_grid(name, len(shown), int(history["epoch"][-1])))
    return item


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        entry = inputs.entries.get(settings.run)
        if entry is None or not isinstance(entry.result, GanResult):
            return Collected({"run": settings.run, "waiting": True, "losses": None})
        facts = inputs.facts[settings.run]
        return Collected({"run": settings.run, "status": entry.result.status, "facts": facts,
                          **draw(settings.run, entry, inputs.assets, settings.final_samples,
                                 inputs.percent_digits)})


VIEW = Kind("gan_training", Settings)
