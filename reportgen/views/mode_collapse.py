"""The mode_collapse view: a GAN run's generated images, classified at each recorded epoch by a
trained classifier run (measured by the pipeline's derive stage), and their diversity."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Literal

from pydantic import Field

from reportgen.project.spec import CLASSIFIER_KINDS, ViewSettings
from reportgen.train.store import WEIGHTS_FILE
from reportgen.views import analysis, describe, figures
from reportgen.views.base import Collected, ViewInputs, ViewKind
from reportgen.views.gan_training import pick_epochs


class Settings(ViewSettings):
    """Mode collapse, measured: the generated images of a GAN run, classified at each recorded
    epoch by a trained classifier run (a dependency: it trains first, and the measurement is
    redone when it changes)."""

    kind: Literal["mode_collapse"]
    run: str
    classifier: str
    present_share: Annotated[float, Field(gt=0, lt=1)] = 0.02  # a digit "appears" above this share
    diversity_samples: Annotated[int, Field(ge=10, le=5000)] = 500
    # Epochs listed in the table: the first, the last and evenly spaced ones between (the figure
    # shows every epoch); 0 lists them all.
    table_rows: Annotated[int, Field(ge=0, le=1000)] = 6

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        gans = sorted(n for n, k in kinds.items() if k == "gan")
        if self.run in refused or self.run in gans:  # a refused run's own problem is reported already
            return []
        return [("run", f"expected one of this section's gan runs {gans}, got {self.run!r}")]

    def project_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        if kinds.get(self.classifier) in CLASSIFIER_KINDS or self.classifier in refused:
            return []
        classifiers = sorted(n for n, k in kinds.items() if k in CLASSIFIER_KINDS)
        return [("classifier", f"expected the name of a classifier run (kind mlp, cnn or custom) "
                               f"declared in experiments/, one of {classifiers}, got {self.classifier!r}")]

    def dependencies(self, run: str) -> list[str]:
        return [self.classifier] if run == self.run else []


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        gan_entry = inputs.entries[settings.run]
        measured_entry = inputs.measures.get((settings.run, settings.classifier))
        if measured_entry is None:
            missing = [n for n in (settings.run, settings.classifier) if inputs.entries[n] is None]
            no_epoch = gan_entry is not None and not gan_entry.result.history.get("epoch")
            judge_entry = inputs.entries[settings.classifier]
            judge_failed = judge_entry is not None and judge_entry.result.status != "ok"
            # Both results usable, the measurement not stored: a build measures it without training.
            unmeasured = (not missing and not no_epoch and not judge_failed and judge_entry is not None
                          and judge_entry.file(WEIGHTS_FILE) is not None)
            return Collected({"waiting": missing, "no_epoch": no_epoch, "judge_failed": judge_failed,
                              "unmeasured": unmeasured, "run": settings.run, "classifier": settings.classifier})
        assert gan_entry is not None
        judged = measured_entry.arrays()
        measured = analysis.mode_collapse(
            measured_entry.result.epochs, judged["predicted"], judged["confidence"],
            gan_entry.arrays()["samples"], inputs.validation_images, settings.present_share,
            settings.diversity_samples, len(inputs.classes))
        measured.update(run=settings.run, classifier=settings.classifier,
                        classifier_accuracy=inputs.facts[settings.classifier].get("val_accuracy"))
        figures.save(inputs.assets / inputs.figure, figures.mode_collapse, measured["rows"], settings.classifier,
                     inputs.classes)
        rows = measured["rows"]
        listed = rows
        if settings.table_rows and len(rows) > settings.table_rows:
            chosen = set(pick_epochs([r["epoch"] for r in rows], settings.table_rows))
            listed = [r for r in rows if r["epoch"] in chosen]
        alt = describe.mode_collapse(settings.run, settings.classifier, rows, inputs.classes, inputs.percent_digits)
        return Collected({"measured": measured, "figure": f"assets/{inputs.figure}", "listed": listed, "alt": alt},
                         measured)

    def add_facts(self, view_facts: dict[str, Any], settings: Settings, facts: Any) -> None:
        view_facts.setdefault(self.kind, {})[settings.run] = facts  # one per GAN run


VIEW = Kind("mode_collapse", Settings)
