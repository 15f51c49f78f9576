"""What a build was asked to do (Options, made once from the command line) and the REPORTGEN_*
environment variables (Environment, read once when a command starts). Both are passed down to
what uses them; nothing below the command line reads os.environ for reportgen's own switches, and
worker processes get the Environment with their task."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from reportgen.errors import ReportgenError

BUILD_DIR = "build"

Precision = Literal["float32", "mixed_bfloat16"]  # how a run computes: --precision and `precision`
# What report.pdf declares: tagged (always), and PDF/UA-1 or PDF/A-3b conformance where asked for.
PdfVariant = Literal["tagged", "pdf/ua-1", "pdf/a-3b"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

MNIST_ENV = "REPORTGEN_MNIST"  # Keras' mnist.npz, read instead of downloading
CACHE_ENV = "REPORTGEN_CACHE"  # the result cache's folder
THREADS_ENV = "REPORTGEN_THREADS"  # the backend's CPU thread pool for every run
SCHEDULER_ENV = "REPORTGEN_SCHEDULER"  # a Dask scheduler to train on
LOOP_ENV = "REPORTGEN_DEVICE_LOOP"  # JAX: 1, a tenth of an epoch per call; 0, a step per call
AUTOTUNE_ENV = "REPORTGEN_XLA_AUTOTUNE"  # JAX: XLA's GPU autotuning level, 0-4, for every model
OPTIONS_ENV = "REPORTGEN_XLA_OPTIONS"  # JAX: a JSON object of XLA compile options for the training loops
CACHE_MB_ENV = "REPORTGEN_XLA_CACHE_MB"  # JAX: disk the build's compiled programs may take, in megabytes
CACHE_MB_DEFAULT = 2048.0
STACK_ENV = "REPORTGEN_STACK_REPEATS"  # 0: a dense run's repeats train one by one, not stacked in one program


@dataclass(frozen=True)
class Environment:
    """Every REPORTGEN_* variable, checked and typed. `read` raises a ReportgenError naming the
    variable, its value and what was expected, so a bad one stops a command before any training."""

    mnist_file: Path | None = None
    cache_dir: Path | None = None
    threads: int | None = None  # None: the cores this process may use
    scheduler: str | None = None
    device_loop: bool | None = None  # None: by device (in one program on accelerators)
    xla_autotune: int | None = None  # None: by model (none without convolutions on a GPU)
    xla_options: tuple[tuple[str, bool | int | float | str], ...] = ()  # pairs: the object stays hashable
    xla_cache_mb: float = CACHE_MB_DEFAULT
    stack_repeats: bool = True

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return env.get(name, "").strip()

        return cls(mnist_file=Path(text(MNIST_ENV)) if text(MNIST_ENV) else None,
                   cache_dir=Path(text(CACHE_ENV)) if text(CACHE_ENV) else None,
                   threads=_threads(text(THREADS_ENV)),
                   scheduler=text(SCHEDULER_ENV) or None,
                   device_loop={"0": False, "1": True, "": None}[_choice(LOOP_ENV, text(LOOP_ENV), ("0", "1"))],
                   xla_autotune=_level(text(AUTOTUNE_ENV)),
                   xla_options=tuple(_xla_options(text(OPTIONS_ENV)).items()),
                   xla_cache_mb=_megabytes(text(CACHE_MB_ENV)),
                   stack_repeats=_choice(STACK_ENV, text(STACK_ENV), ("0", "1")) != "0")

    @property
    def xla_extra(self) -> dict[str, Any]:
        """REPORTGEN_XLA_OPTIONS as a dict ({} when unset)."""
        return dict(self.xla_options)

    @property
    def xla_cache_bytes(self) -> int:
        return int(self.xla_cache_mb * 2**20)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value and value not in allowed:
        raise ReportgenError(f"environment variable {name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _level(value: str) -> int | None:
    chosen = _choice(AUTOTUNE_ENV, value, ("0", "1", "2", "3", "4"))
    return int(chosen) if chosen else None


def _threads(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ReportgenError(f"environment variable {THREADS_ENV}={value!r}: expected a whole number of CPU "
                             "threads for each run, 1 or more, such as 2")
    return int(value)


def _megabytes(value: str) -> float:
    if not value:
        return CACHE_MB_DEFAULT
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise ReportgenError(f"environment variable {CACHE_MB_ENV}={value!r}: expected a size in megabytes, "
                             "0 or more, such as 2048 or 0.5")
    return megabytes


def _xla_options(value: str) -> dict[str, Any]:
    """REPORTGEN_XLA_OPTIONS: XLA options set to scalars. Whether this XLA knows them is checked by
    compiling with them (train/machine.check_environment)."""
    if not value:
        return {}
    example = '{"xla_gpu_enable_triton_gemm": false}'
    try:
        options = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: not JSON ({exc.msg} at character {exc.pos}); "
                             f"expected an object of XLA options, such as {example}") from None
    if not isinstance(options, dict) or not options:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: expected a non-empty JSON object of XLA "
                             f"options, such as {example}; got {value!r}")
    bad = [f"{json.dumps(name)}: {json.dumps(setting)}" for name, setting in options.items()
           if not name.startswith("xla_") or isinstance(setting, (list, dict)) or setting is None]
    if bad:
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: {'; '.join(bad)}: expected XLA options (names "
                             "that start with xla_) set to true, false, a number or a string")
    return dict(options)


@dataclass
class Options:
    root: Path
    profile: str = "full"
    only: list[str] = field(default_factory=list)
    force: bool = False
    data_file: Path | None = None  # --data-file, else REPORTGEN_MNIST (env.mnist_file)
    cache_dir: Path | None = None  # --cache-dir, else REPORTGEN_CACHE
    build_dir: Path | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    precision: str | None = None  # --precision: every experiment in it
    jobs: int = 1  # experiments trained at once in local worker processes
    scheduler: str | None = None  # a Dask scheduler's address: train there instead (else REPORTGEN_SCHEDULER)
    env: Environment = field(default_factory=Environment)
    pdf_variant: PdfVariant = "tagged"  # --pdf-variant
    self_contained: bool = False  # --self-contained: report.html with its stylesheet and figures inline
    repeats: int | None = None  # --repeats: every run trained this many times

    @property
    def out(self) -> Path:
        return self.build_dir or self.root / BUILD_DIR

    @property
    def mnist_file(self) -> Path | None:
        return self.data_file or self.env.mnist_file

    @property
    def cache_root(self) -> Path:
        return self.cache_dir or self.env.cache_dir or self.root / ".reportgen-cache"

    @property
    def scheduler_address(self) -> str | None:
        return self.scheduler or self.env.scheduler

    def last_build(self) -> dict[str, Any]:
        """What the last build's manifest.json records; empty when there is none (or it is unreadable)."""
        try:
            return dict(json.loads((self.out / "manifest.json").read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    def like_last_build(self, profile_given: bool) -> Options:
        """These options, with what the last build made where the command line left it open: its
        profile (unless --quick or --full was given), its image limits and its --precision. render,
        status, list and check use it to find the results that build stored (and its --repeats)."""
        last = self.last_build()
        limits = last.get("limits") or {}
        override = last.get("precision_override")
        repeats = last.get("repeats_override")
        return replace(self, profile=self.profile if profile_given else str(last.get("profile", self.profile)),
                       train_limit=self.train_limit or limits.get("train"),
                       val_limit=self.val_limit or limits.get("val"),
                       precision=self.precision or (override if override in PRECISIONS else None),
                       repeats=self.repeats or (repeats if isinstance(repeats, int) and repeats > 0 else None))
