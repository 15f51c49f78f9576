"""View kinds are plug-ins: a kind defined outside reportgen (here, in this test module), found
through the `reportgen.views` entry points, is validated by the spec loader and shown through its
own template partial, with no change to reportgen itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pytest
from pydantic import Field

from reportgen.errors import ReportgenError, SpecError
from reportgen.project import views as registry
from reportgen.project.dataset import Dataset
from reportgen.project.settings import Options
from reportgen.project.spec import ViewSettings, load_project
from reportgen.report import context, render
from reportgen.train import store
from reportgen.train.plan import Planned, Session
from reportgen.views.base import Collected, ViewInputs, ViewKind, lookup


class Settings(ViewSettings):
    """A list of the section's runs under a note, one of them highlighted."""

    kind: Literal["run_list"]
    note: Annotated[str, Field(min_length=1, max_length=80)]
    highlight: str | None = None

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        if self.highlight is None or self.highlight in kinds or self.highlight in refused:
            return []
        return [("highlight", f"expected one of this section's runs {sorted(kinds)}, got {self.highlight!r}")]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        return Collected({"note": settings.note, "runs": list(inputs.runs), "highlight": settings.highlight},
                         {"count": len(inputs.runs)})


VIEW = Kind("run_list", Settings)
# The same kind as a plug-in package ships it: its partial in a template folder beside its module.
SHIPPED_VIEW = Kind("run_list", Settings, templates=Path(__file__).parent / "run_list_templates")

PARTIAL = (Path(__file__).parent / "run_list_templates" / "views" / "run_list.html.j2").read_text()

SECTION = """
number = "1"
title = "Listed"

[[runs]]
name = "small"
kind = "mlp"
hidden_layers = [8]

[[runs]]
name = "large"
kind = "mlp"
hidden_layers = [64]

[[views]]
kind = "run_list"
note = "Two nets, <one> large"
highlight = "large"

[[views]]
kind = "convergence"
"""


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This module's kind installed as an entry point, beside the shipped kinds."""
    installed = [EntryPoint("run_list", f"{__name__}:VIEW", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: installed if group == registry.GROUP else [])
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The kind installed from a package that ships its own partial."""
    installed = [EntryPoint("run_list", f"{__name__}:SHIPPED_VIEW", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: installed if group == registry.GROUP else [])
    registry.reset()
    yield
    registry.reset()


@pytest.fixture(autouse=True)
def _forget_kinds() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def problems_of(root: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_shipped_kinds_are_registered_without_installed_entry_points(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    assert list(registry.registered()) == ["params_vs_accuracy", "overlay", "convergence", "misclassified",
                                           "mode_collapse", "confusion", "metric_vs_setting"]
    assert lookup("overlay").partial == "views/overlay.html.j2"


def test_an_unregistered_kind_is_refused_naming_the_registered_ones(make_project, monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    text = "\n".join(problems_of(make_project({"experiments/l.toml": SECTION})))
    assert "l.toml [views[0].kind]: expected one of 'params_vs_accuracy', 'overlay', 'convergence', " \
           "'misclassified', 'mode_collapse', 'confusion', 'metric_vs_setting', got 'run_list'" in text


def test_a_plugged_in_kind_is_accepted(make_project, plugged):
    section = load_project(make_project({"experiments/l.toml": SECTION})).sections[0]
    view = section.views[0]
    assert isinstance(view, Settings) and view.note == "Two nets, <one> large" and view.highlight == "large"
    assert "run_list" in registry.registered()


def test_a_plugged_in_kinds_wrong_settings_are_refused_with_the_key_and_why(make_project, plugged):
    bad = SECTION.replace('note = "Two nets, <one> large"', 'note = ""\ncolour = "red"').replace(
        'highlight = "large"', 'highlight = "huge"')
    text = "\n".join(problems_of(make_project({"experiments/l.toml": bad})))
    assert "l.toml [views[0].note]: String should have at least 1 character, got ''" in text
    assert "l.toml [views[0].colour]: unknown key" in text
    missing = SECTION.replace('note = "Two nets, <one> large"\n', "")
    text = "\n".join(problems_of(make_project({"experiments/l.toml": missing})))
    assert "l.toml [views[0].note]: required key is missing" in text
    elsewhere = SECTION.replace('highlight = "large"', 'highlight = "huge"')
    text = "\n".join(problems_of(make_project({"experiments/l.toml": elsewhere})))
    assert "l.toml [views[0].highlight]: expected one of this section's runs ['large', 'small'], got 'huge'" in text


def test_a_broken_plug_in_names_itself(make_project, monkeypatch):
    broken = [EntryPoint("run_list", f"{__name__}:NO_SUCH_VIEW", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: broken)
    with pytest.raises(ReportgenError, match=r"view kind 'run_list' \(.*:NO_SUCH_VIEW.*cannot be loaded"):
        load_project(make_project({"experiments/l.toml": SECTION}))


def unbuilt(root: Path, cache: Path) -> Session:
    """The session of a project none of whose runs has a result yet: rendering needs no training."""
    project = load_project(root)
    images, labels = np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64)
    data = Dataset("mnist-sample", "four blank images", images, labels, images, labels)
    planned = [Planned(exp=e, inputs={}, key=f"key-{e.name}", entry=None, reasons=["never run"])
               for e in project.experiments]
    return Session(options=Options(root=root), project=project, data=data, store=store.Store(cache),
                   planned=planned, selected=set())


def test_a_plugged_in_kind_is_shown_through_its_own_partial(make_project, plugged, tmp_path):
    root = make_project({"experiments/l.toml": SECTION,
                         "experiments/l.md": "Notes, {{ section.views.run_list.count }} runs.\n",
                         "templates/views/run_list.html.j2": PARTIAL})
    collected, _warnings = context.collect(unbuilt(root, tmp_path / "cache"))
    entry: dict[str, Any] = collected["sections"][0]["views"][0]
    assert entry["partial"] == "views/run_list.html.j2" and entry["runs"] == ["small", "large"]
    assert collected["sections"][0]["view_facts"]["run_list"] == {"count": 2}
    page = render.html(collected, root, root / "build").read_text(encoding="utf-8")
    assert '<div class="run-list"><p>Two nets, &lt;one&gt; large</p><ul>' in page
    assert '<li class="highlight">large</li>' in page and "<li>small</li>" in page
    assert "Notes, 2 runs." in page  # commentary quotes what the kind measured
    # The shipped partial of the section's other view is still found in the package's templates.
    assert "Epochs to converge" in page


def test_a_kind_with_no_partial_fails_naming_the_template(make_project, plugged, tmp_path):
    root = make_project({"experiments/l.toml": SECTION})
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    with pytest.raises(Exception, match="run_list.html.j2"):
        render.html(collected, root, root / "build")


def test_a_plug_in_ships_its_partial_beside_its_module_and_a_project_may_restyle_it(make_project, shipped,
                                                                                   tmp_path):
    root = make_project({"experiments/l.toml": SECTION})
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    page = render.html(collected, root, root / "build").read_text(encoding="utf-8")
    assert '<div class="run-list"><p>Two nets, &lt;one&gt; large</p><ul>' in page  # the package's own partial
    assert "Epochs to converge" in page  # the built-in kinds' partials are still found
    (root / "templates" / "views").mkdir(parents=True)
    (root / "templates" / "views" / "run_list.html.j2").write_text('<p class="mine">{{ v.runs | length }} runs</p>')
    page = render.html(collected, root, root / "build").read_text(encoding="utf-8")
    assert '<p class="mine">2 runs</p>' in page and "run-list" not in page


def test_every_shipped_kind_renders_before_any_run_has_a_result(make_project, tmp_path):
    section = """
    number = "1"
    title = "Everything, nothing trained"
    [[runs]]
    name = "net-{hidden_layers}"
    kind = "mlp"
    [runs.grid]
    hidden_layers = [[8], [16]]
    [[views]]
    kind = "params_vs_accuracy"
    threshold = 0.9
    [[views]]
    kind = "overlay"
    [[views]]
    kind = "convergence"
    threshold = 0.9
    [[views]]
    kind = "misclassified"
    run = "net-8"
    [[views]]
    kind = "confusion"
    run = "net-8"
    [[views]]
    kind = "metric_vs_setting"
    setting = "hidden_layers"
    """
    root = make_project({"experiments/1.toml": section, "experiments/1.md": "Nothing yet.\n"})
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    page = render.html(collected, root, root / "build").read_text(encoding="utf-8")
    assert "Everything, nothing trained" in page and page.count("No result for this configuration yet") == 2
