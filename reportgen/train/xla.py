"""XLA under JAX: compile options from the REPORTGEN_XLA_* and loop switches, and the build's folder of
compiled programs, kept within a size bound and safe to share between processes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from reportgen.project.settings import Environment

PROGRAM, LAST_USE = "-cache", "-atime"  # JAX's names for a stored program and its last-use time


def device_loop(env: Environment) -> bool:
    """Whether steps loop inside one compiled program (accelerators) or are one call each (CPU)."""
    import jax

    return env.device_loop if env.device_loop is not None else jax.default_backend() != "cpu"


def compiler_options(*models: Any, env: Environment, platform: str | None = None) -> dict[str, Any]:
    """XLA options for the JAX programs that train `models` on `platform` (default: JAX's own).
    On a GPU: no autotuning for models without convolutions, XLA's default for the rest, unless
    REPORTGEN_XLA_AUTOTUNE says otherwise. Elsewhere: none. REPORTGEN_XLA_OPTIONS is added last:
    it reaches reportgen's training loops (a classifier's steps and validation pass, a GAN's steps
    and sampler), not Keras' own eager work (weight initialisers, `predict`), which XLA_FLAGS does."""
    import jax

    options: dict[str, Any] = {}
    if (platform or jax.default_backend()) == "gpu":
        if env.xla_autotune is not None:
            options["xla_gpu_autotune_level"] = env.xla_autotune
        elif not any(_convolves(m) for m in models):
            options["xla_gpu_autotune_level"] = 0
    return {**options, **env.xla_extra}


def keep_programs(folder: str, size: int) -> None:
    """Keep every program JAX compiles in `folder`, within `size` bytes (REPORTGEN_XLA_CACHE_MB; 0
    keeps none, and deletes what earlier builds kept), safely shared by
    the processes of a build (--jobs workers, a second build of the same project).

    JAX with a size bound reads and writes the folder under a file lock, and writes each program
    before the file that records its last use; without a bound it writes without a lock, so one
    worker could read another's program half-written, and a program cut short by a killed
    process stayed for good, read, refused ("truncated stream") and compiled again by every run.
    A program without its last-use file is such a leftover and is deleted here, under that lock,
    as is one written since the last such tidying that does not decompress; so are the programs
    used least recently while the folder is over its bound (JAX checks the bound only when it adds
    a program)."""
    import filelock
    import jax

    try:
        if size:
            os.makedirs(folder, exist_ok=True)
        if os.path.isdir(folder) and _jax_layout_known():  # at 0, what earlier builds kept goes too
            with filelock.FileLock(os.path.join(folder, ".lockfile"), timeout=60):  # the lock JAX takes there
                _tidy_programs(Path(folder), size)
    except OSError:  # a Dask worker on another machine, where the build's folder cannot be made: compile
        return
    if not size:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_compilation_cache_max_size", size)
    # Every program is kept, however quick to compile: a model's weight initialisers are a dozen
    # small programs compiled one after another before training starts (on 2 CPU cores,
    # relu-200x100 on 4,000 images: 2.1 s rebuilding with only the slow ones kept, 1.1 s with all).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def _jax_layout_known() -> bool:
    """Whether this JAX names its programs and their last-use files as _tidy_programs expects (its
    private names: another JAX is left to keep the folder alone rather than have it emptied)."""
    try:
        from jax._src import lru_cache
        from jax._src.compilation_cache import decompress_executable  # noqa: F401  (used by _whole)
    except ImportError:
        return False
    return (getattr(lru_cache, "_CACHE_SUFFIX", None), getattr(lru_cache, "_ATIME_SUFFIX", None)) == \
        (PROGRAM, LAST_USE)


def _tidy_programs(folder: Path, size: int) -> None:
    stamp = folder / ".tidied"  # programs written since it was last touched are read through once
    since = stamp.stat().st_mtime_ns if stamp.is_file() else 0
    kept = []
    for program in folder.glob("*" + PROGRAM):
        used = program.with_name(program.name.removesuffix(PROGRAM) + LAST_USE)
        if not used.is_file() or (program.stat().st_mtime_ns >= since and not _whole(program)):
            # Cut short: JAX writes a program before its last-use time, but a process that read it
            # meanwhile (and refused it) will have written that time all the same.
            program.unlink(missing_ok=True)
            used.unlink(missing_ok=True)
        elif program.is_file():
            kept.append((int.from_bytes(used.read_bytes(), "little"), program.stat().st_size, program, used))
    total = sum(bytes_ for _, bytes_, _, _ in kept)
    for _, bytes_, program, used in sorted(kept):
        if total <= size:
            break
        program.unlink(missing_ok=True)
        used.unlink(missing_ok=True)
        total -= bytes_
    stamp.touch()


def stored_programs_bytes(folder: Path) -> int:
    """The size of the programs kept in `folder` (what REPORTGEN_XLA_CACHE_MB bounds)."""
    total = 0
    for program in folder.glob("*" + PROGRAM):
        with contextlib.suppress(OSError):  # a build running meanwhile may delete it
            total += program.stat().st_size
    return total


def _whole(program: Path) -> bool:
    """Whether a stored program decompresses, as JAX will when it loads it."""
    from jax._src.compilation_cache import decompress_executable

    try:
        decompress_executable(program.read_bytes())
    except Exception:  # zlib.error, zstd's own errors: any refusal means JAX would refuse it too
        return False
    return True


CONVOLUTIONS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D")


def _convolves(model: Any) -> bool:
    import keras

    kinds = tuple(getattr(keras.layers, name) for name in CONVOLUTIONS if hasattr(keras.layers, name))
    return any(isinstance(layer, kinds) for layer in model._flatten_layers(include_self=True))
