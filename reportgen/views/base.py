"""What a view kind is: its settings model, what it measures and draws from stored results, and the
template partial that shows it. One module per kind under reportgen/views/ defines a `VIEW`, and
the registry (reportgen.project.views) finds it through the entry points of `reportgen.views`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from reportgen.errors import ReportgenError
from reportgen.project.spec import ViewSettings
from reportgen.project.views import registered
from reportgen.train.result import ClassifierResult, GanResult, History, ModeCollapseResult
from reportgen.train.store import Entry
from reportgen.views import analysis
from reportgen.views.stats import Comparison

S = TypeVar("S", bound=ViewSettings)


@dataclass(frozen=True)
class ViewInputs:
    """What a view may draw on while the report is collected."""

    assets: Path  # the folder figures are written to; the report names them "assets/<file>"
    figure: str  # the file name of the view's figure: "<section file stem>-<kind>-<index>.svg"
    section: str  # the section's file stem, for the names of further figures
    runs: tuple[str, ...]  # the section's runs, in order
    facts: Mapping[str, dict[str, Any]]  # every run with a result, by name (analysis.run_facts, gan_facts)
    classifiers: frozenset[str]  # the runs with a result that are not GANs
    entries: Mapping[str, Entry[ClassifierResult | GanResult] | None]  # every declared run's, None where it has none
    measures: Mapping[tuple[str, str], Entry[ModeCollapseResult]]  # derived: (gan run, classifier run) -> entry
    validation_images: Any  # the data set's validation images
    validation_labels: Any = ()  # and their labels
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))  # the data set's class names, label 0 first
    percent_digits: int = 2  # the project's decimals of a percentage, for alt text as for tables

    @property
    def section_facts(self) -> list[dict[str, Any]]:
        """The facts of the section's classifier runs: a GAN has no validation accuracy to place."""
        return [self.facts[n] for n in self.runs if n in self.classifiers]

    def compare(self, first: str, second: str, metric: str = "val_accuracy") -> Comparison:
        """Two runs with results on a metric: over their repeats, or on the images for single runs."""
        a, b = self.entries.get(first), self.entries.get(second)
        results = (a.result if a is not None else None, b.result if b is not None else None)
        return analysis.compare_runs(self.facts[first], self.facts[second], results, metric, self.percent_digits)

    def winner(self, names: list[str], metric: str = "val_accuracy", lower_is_better: bool = False) -> dict[str, Any]:
        """The best of the runs on a metric, its runner-up and the runs tied with it (analysis.winner)."""
        means = {n: float(self.facts[n][metric]) for n in names}
        return analysis.winner(names, lambda a, b: self.compare(a, b, metric), means, lower_is_better)

    def history(self, run: str) -> History:
        entry = self.entries[run]
        assert entry is not None
        return entry.result.history


class Collected(NamedTuple):
    """A view's part of its template entry (beside kind, measured, figure, figures, caption and
    partial, which every entry has), and what commentary may quote as `section.views.<kind>`
    (None: nothing)."""

    entry: dict[str, Any]
    facts: Any = None


class ViewKind(Generic[S]):
    """One kind of view. Subclass it, override `collect`, and make one instance the module's VIEW."""

    def __init__(self, kind: str, settings: type[S], partial: str | None = None,
                 templates: Path | None = None) -> None:
        self.kind = kind
        self.settings = settings
        # The partial is looked up in the project's templates/ first (a project may restyle any
        # kind), then in `templates` (a plug-in's own folder, shipped beside its module), then in
        # the templates shipped with reportgen (where the built-in kinds keep theirs).
        self.partial = partial or f"views/{kind}.html.j2"
        self.templates = templates

    def collect(self, settings: S, inputs: ViewInputs) -> Collected:
        """Measure, draw the figures into inputs.assets, and return the template entry's own keys."""
        return Collected({})

    def add_facts(self, view_facts: dict[str, Any], settings: S, facts: Any) -> None:
        """Place what collect measured where commentary finds it: by default `section.views.<kind>`."""
        view_facts[self.kind] = facts

    def __repr__(self) -> str:
        return f"ViewKind({self.kind!r})"


def template_folders() -> list[Path]:
    """The template folders the registered view kinds ship their partials in."""
    return [view.templates for view in registered().values() if isinstance(view, ViewKind) and view.templates]


def lookup(kind: str) -> ViewKind[Any]:
    """The registered kind of that name."""
    view = registered().get(kind)
    if not isinstance(view, ViewKind):
        raise ReportgenError(f"view kind {kind!r} is not registered as a reportgen.views.base.ViewKind")
    return view
