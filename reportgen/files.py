"""Files written so that a reader never sees half of one: atomic replacement, and the sweeping up
of what a process killed mid-write left behind. Used by every stage that writes."""

from __future__ import annotations

import os
import re
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMP_FILE = re.compile(r"^\.(.+)\.reportgen-(\d{1,9})\.tmp$")


def temp_name(path: Path) -> Path:
    """Where write_atomic writes before renaming: hidden, named after the file and the writer's pid."""
    return path.with_name(f".{path.name}.reportgen-{os.getpid()}.tmp")


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files write_atomic left in a folder when their process died mid-write; those of
    live processes (another build writing now) and anything not named like them stay."""
    removed = []
    for path in folder.iterdir() if folder.is_dir() and not folder.is_symlink() else []:
        found = TEMP_FILE.match(path.name)
        if found and path.is_file() and not path.is_symlink() and not pid_alive(int(found[2])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Replace a file in one step: readers see the old bytes or the new, never a part."""
    tmp = temp_name(path)
    write_synced(tmp, data)
    os.replace(tmp, path)


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
