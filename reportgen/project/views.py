"""The registry of view kinds: which `kind = "..."` a section's `[[views]]` entry may name.

Each kind lives in one module (its settings model, what it measures and draws, and the name of its
template partial) and is found here, the way mkdocs finds its plug-ins: through the Python entry
points of the group `reportgen.views`, one per kind, each naming the module's `VIEW` object, e.g.

    [project.entry-points."reportgen.views"]
    params_vs_accuracy = "reportgen.views.params_vs_accuracy:VIEW"

The kinds reportgen ships are also listed here, so they work from a checkout whose entry points
were never installed; a kind found both ways is the same object, and counts once. This module
sits in the project layer and never imports reportgen.views by name: the kinds are loaded when the
first section file is validated, not when this module is imported.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, Protocol, Union

from pydantic import BaseModel, Field, TypeAdapter

from reportgen.errors import ReportgenError

GROUP = "reportgen.views"

# The shipped kinds, in the order their names are listed in errors.
BUILTIN = (
    EntryPoint("params_vs_accuracy", "reportgen.views.params_vs_accuracy:VIEW", GROUP),
    EntryPoint("overlay", "reportgen.views.overlay:VIEW", GROUP),
    EntryPoint("convergence", "reportgen.views.convergence:VIEW", GROUP),
    EntryPoint("misclassified", "reportgen.views.misclassified:VIEW", GROUP),
    EntryPoint("mode_collapse", "reportgen.views.mode_collapse:VIEW", GROUP),
    EntryPoint("confusion", "reportgen.views.confusion:VIEW", GROUP),
    EntryPoint("metric_vs_setting", "reportgen.views.metric_vs_setting:VIEW", GROUP),
)


class ViewPlugin(Protocol):
    """What the project layer needs of a view kind: its name and its settings model (a subclass of
    spec.ViewSettings whose `kind` is a Literal of that name); the rest is reportgen.views.base.ViewKind."""

    kind: str
    settings: type[BaseModel]
    partial: str


def _installed() -> list[EntryPoint]:
    return list(entry_points(group=GROUP))


def _load(point: EntryPoint) -> ViewPlugin:
    try:
        view = point.load()
    except Exception as exc:  # a broken plug-in names itself, whatever went wrong in it
        raise ReportgenError(f"view kind {point.name!r} ({point.value}, entry point group {GROUP!r}) "
                             f"cannot be loaded: {type(exc).__name__}: {exc}") from exc
    missing = [a for a in ("kind", "settings", "partial") if not hasattr(view, a)]
    if missing:
        raise ReportgenError(f"view kind {point.name!r} ({point.value}) is not a view kind: it has no "
                             f"{', '.join(missing)}")
    if view.kind != point.name:
        raise ReportgenError(f"view kind {point.name!r} ({point.value}) calls itself {view.kind!r}; "
                             "the entry point's name must be the kind's name")
    return view


@functools.cache
def registered() -> dict[str, ViewPlugin]:
    """Every view kind, by name: the shipped ones first, then those installed as entry points."""
    kinds: dict[str, ViewPlugin] = {}
    for point in (*BUILTIN, *_installed()):
        view = _load(point)
        if kinds.get(view.kind, view) is not view:
            raise ReportgenError(f"view kind {view.kind!r} is registered twice, by different objects "
                                 f"(the second: {point.value}); uninstall one")
        kinds[view.kind] = view
    return kinds


@functools.cache
def adapter() -> TypeAdapter[Any]:
    """The settings of any registered kind, told apart by `kind`."""
    models = tuple(v.settings for v in registered().values())
    union: Any = Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007
    return TypeAdapter(union)


def reset() -> None:
    """Forget the loaded kinds, so the next validation looks for entry points again (for tests)."""
    registered.cache_clear()
    adapter.cache_clear()
