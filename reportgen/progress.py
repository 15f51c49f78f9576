"""Progress display for long work: experiment i of N, the epoch bar with its metrics, an ETA."""

from __future__ import annotations

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


class TrainingProgress:
    """Two bars: experiments done of N, and the current run's steps over all its epochs."""

    def __init__(self, console: Console, total: int):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID = self.progress.add_task("experiments", total=total, metrics="")
        self.current: TaskID | None = None
        self._steps = 1
        self._epoch = 0
        self._epochs = 1
        self._last: dict[str, float] = {}

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def start_experiment(self, index: int, total: int, name: str, epochs: int) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
        self._epochs = epochs
        self.current = self.progress.add_task(f"[{index}/{total}] {name}", total=None, metrics="")

    def finish_experiment(self, message: str) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
            self.current = None
        self.progress.advance(self.overall)
        self.console.print(message)

    # --- run.Reporter -------------------------------------------------------------------------

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._steps, self._epoch, self._epochs = steps, epoch, epochs
        if self.current is not None:
            self.progress.update(self.current, total=steps * epochs, completed=steps * (epoch - 1),
                                 metrics=self._format(f"epoch {epoch}/{epochs}"))

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        self._last = logs
        if self.current is not None:
            self.progress.update(self.current, completed=self._steps * (self._epoch - 1) + step,
                                 metrics=self._format(f"epoch {self._epoch}/{self._epochs}"))

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._last = logs
        if self.current is not None:
            self.progress.update(self.current, completed=self._steps * epoch,
                                 metrics=self._format(f"epoch {epoch}/{self._epochs}"))

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)

    def _format(self, head: str) -> str:
        shown = [f"{k} {v:.4f}" for k, v in self._last.items()
                 if k in ("loss", "accuracy", "val_loss", "val_accuracy", "d_loss", "g_loss")]
        return "  ".join([head, *shown])
