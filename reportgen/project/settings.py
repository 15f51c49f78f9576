"""What a build was asked to do: the project folder, profile, selection, data and output places,
image limits, precision and how many runs train at once. Made once from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

BUILD_DIR = "build"


@dataclass
class Options:
    root: Path
    profile: str = "full"
    only: list[str] = field(default_factory=list)
    force: bool = False
    data_file: Path | None = None
    cache_dir: Path | None = None
    build_dir: Path | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    precision: str | None = None  # --precision: every experiment in it
    jobs: int = 1  # experiments trained at once in local worker processes
    scheduler: str | None = None  # a Dask scheduler's address: train there instead

    @property
    def out(self) -> Path:
        return self.build_dir or self.root / BUILD_DIR
