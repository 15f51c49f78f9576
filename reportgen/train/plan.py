"""The plan of a build: every experiment with its cache key, its stored result when fresh and why
it is not; the session that carries the plan, the data and the cache through the later stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reportgen.project.dataset import Dataset
from reportgen.project.settings import Options
from reportgen.project.spec import Experiment, Project
from reportgen.train import store
from reportgen.train.result import ClassifierResult, GanResult, ModeCollapseResult
from reportgen.train.store import Entry


@dataclass
class Planned:
    """One experiment with its cache key, its stored result if fresh, and why it is not."""

    exp: Experiment
    inputs: dict[str, Any]
    key: str
    entry: Entry[ClassifierResult | GanResult] | None
    reasons: list[str]
    error: str | None = None
    cache_hit: bool = False
    seconds: float = 0.0

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return "fresh" if self.entry is not None else ("stale" if self.reasons != ["never run"] else "missing")


@dataclass
class Session:
    options: Options
    project: Project
    data: Dataset
    store: store.Store
    planned: list[Planned]
    selected: set[str]
    backend: str = "tensorflow"  # the Keras backend the build trains with
    versions: dict[str, str] = field(default_factory=dict)  # of what can change a result (part of each key)
    # Mode-collapse measurements, by (gan run, classifier run): derived results, cached like runs.
    measures: dict[tuple[str, str], Entry[ModeCollapseResult]] = field(default_factory=dict)
    # What each commentary slot quotes now, recorded after rendering (experiments/commentary.lock.json).
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)


def rebuild_command(session: Session) -> str:
    """`reportgen build` with this session's profile, backend, image limits and precision, for hints: a plain
    `reportgen build` after a quick draft would train the full profile, which takes far longer."""
    options = session.options
    flags = ["--quick"] if session.project.profile == "quick" else []
    flags += [f"--backend {session.backend}"] if session.backend != "tensorflow" else []
    flags += [f"--limit-train {options.train_limit}"] if options.train_limit else []
    flags += [f"--limit-val {options.val_limit}"] if options.val_limit else []
    flags += [f"--precision {options.precision}"] if options.precision else []
    flags += [f"--repeats {options.repeats}"] if options.repeats else []
    return " ".join(["reportgen build", *flags])
