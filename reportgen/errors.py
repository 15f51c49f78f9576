"""Typed errors raised by the library; the CLI turns each into one `Error: ...` line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file, precise enough to fix without a traceback."""

    file: Path | str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = str(self.file) + (f":{self.line}" if self.line else "")
        key = f" [{self.key}]" if self.key else ""
        return f"{where}{key}: {self.message}"


class ReportgenError(Exception):
    """Base of every error the CLI reports as a one-line message with exit code 1."""


class SpecError(ReportgenError):
    """The experiment files are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the experiment files:\n{lines}")


class DataError(ReportgenError):
    """A data set cannot be loaded; the message says how to get it."""


class RunError(ReportgenError):
    """An experiment failed while training."""

    def __init__(self, experiment: str, message: str):
        self.experiment = experiment
        super().__init__(f"experiment {experiment!r} failed: {message}")


class RenderError(ReportgenError):
    """The report cannot be rendered: a template, placeholder or asset is wrong."""

    def __init__(self, message: str, file: Path | str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(where + message)


class CacheError(ReportgenError):
    """The result cache cannot be used (for example: it is locked by a live process)."""


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what had finished, what was cut short and what never started."""

    def __init__(self, finished: list[str], current: str | None, resumable: bool, pending: list[str]):
        self.finished, self.current, self.resumable, self.pending = finished, current, resumable, pending
        super().__init__("interrupted")
