"""Progress display for long work: experiments done of N, a bar per running experiment with its
epoch and metrics, an ETA. Several experiments may run at once (--jobs, --scheduler): each has
its own line, labelled with its name, so the display stays readable."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

SHOWN_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "d_loss", "g_loss")


class RunBar:
    """One running experiment's line; an outcome.Reporter."""

    def __init__(self, owner: TrainingProgress, task: TaskID):
        self.owner, self.task = owner, task
        self._steps, self._epoch, self._epochs = 1, 0, 1
        self._last: dict[str, float] = {}

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._steps, self._epoch, self._epochs = steps, epoch, epochs
        self._last = {}  # the last epoch's figures are not this one's
        self.owner.progress.update(self.task, total=steps * epochs, completed=steps * (epoch - 1),
                                   metrics=self._format(f"epoch {epoch}/{epochs}"))

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        self._last = logs
        self.owner.progress.update(self.task, completed=self._steps * (self._epoch - 1) + step,
                                   metrics=self._format(f"epoch {self._epoch}/{self._epochs}"))

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._last = logs
        self.owner.progress.update(self.task, completed=self._steps * epoch,
                                   metrics=self._format(f"epoch {epoch}/{self._epochs}"))

    def note(self, message: str) -> None:
        self.owner.console.print(message, markup=False)

    def _format(self, head: str) -> str:
        shown = [f"{k} {v:.4f}" for k, v in self._last.items() if k in SHOWN_METRICS]
        return "  ".join([head, *shown])


class TrainingProgress:
    """The overall bar and one line per running experiment. Sequential callers use
    start_experiment/finish_experiment and pass the progress itself as the reporter; concurrent
    callers take a RunBar per experiment from `bar` and close it with `finish`."""

    def __init__(self, console: Console, total: int):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(),
            MofNCompleteColumn(),
            # On a narrow terminal the figures give way, not the run's name.
            TextColumn("{task.fields[metrics]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID = self.progress.add_task("experiments", total=total, metrics="")
        self.current: RunBar | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def bar(self, index: int, total: int, name: str) -> RunBar:
        with self._lock:
            return RunBar(self, self.progress.add_task(f"[{index}/{total}] {name}", total=None, metrics=""))

    def finish(self, bar: RunBar | None, message: str) -> None:
        with self._lock:
            if bar is not None:
                self.progress.remove_task(bar.task)
            self.progress.advance(self.overall)
            self.console.print(message)

    def start_experiment(self, index: int, total: int, name: str, epochs: int) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current.task)
        self.current = self.bar(index, total, name)

    def finish_experiment(self, message: str) -> None:
        self.finish(self.current, message)
        self.current = None

    # --- outcome.Reporter, for the one current experiment of a sequential build ---------------------

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if self.current is not None:
            self.current.epoch_start(epoch, epochs, steps)

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        if self.current is not None:
            self.current.batch_end(step, logs)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.current is not None:
            self.current.epoch_end(epoch, logs)

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)
