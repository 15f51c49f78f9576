"""TensorFlow's native start-up lines, held back as TensorFlow loads.

Its native libraries log a few lines as they load ("oneDNN custom operations are on", "Could not
find cuda drivers"), after absl's notice that logging is not set up yet, and these ignore
TF_CPP_MIN_LOG_LEVEL. Every process that trains under TensorFlow loads them, and they ran through
the progress display, six lines a process. While tensorflow is imported, stderr goes through a
filter in a process of its own (main), which passes on at once every line the level lets
through: a fatal error that aborts the importing process is still shown. The module imports
nothing heavy, so the filter starts in milliseconds."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] ")
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def threshold(level: str | None = None) -> int:
    """TF_CPP_MIN_LOG_LEVEL (or `level`) as a number: 0 shows all, 1 holds back info lines, 2
    warnings too, 3 errors too."""
    try:
        return max(0, int(os.environ.get(LEVEL_ENV, "0") if level is None else level))
    except ValueError:
        return 0


def kept(line: str, level: int) -> bool:
    """Whether a line written to stderr during the import gets through: TensorFlow's own log
    lines below the level and absl's notice do not; anything else (a Python warning, a traceback,
    a fatal error) does."""
    native = _NATIVE_LINE.match(line)
    if native:
        return "IWE".find(native.group(1)) not in range(level)
    return not (level and line.rstrip() == _ABSL_NOTICE)


def native_log_kept(text: str, level: str | None = None) -> str:
    """The lines of `text` that kept() lets through."""
    limit = threshold(level)
    return "".join(line for line in text.splitlines(keepends=True) if kept(line, limit))


class QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports tensorflow, once, with stderr sifted by kept() in a filter process."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            self._loader = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        level = threshold()
        sift = _start_filter(level) if level and sys.stderr is not None else None
        if sift is None or sift.stdin is None:
            self._loader.exec_module(module)
            return
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sift.stdin.fileno(), 2)
            self._loader.exec_module(module)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sift.stdin.close()
            try:  # it ends as its input does, unless something tensorflow started still holds that
                sift.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sift.kill()


def _start_filter(level: int) -> subprocess.Popen[bytes] | None:
    # Isolated (-I): no current folder or PYTHONPATH ahead of the standard library, where a
    # project's own typing.py or re.py would stop the filter and lose every line; reportgen is
    # found where this process found it, after the standard library.
    here = str(Path(__file__).resolve().parents[2])
    code = f"import sys; sys.path.append({here!r}); from reportgen.train.native_log import main; main()"
    try:
        return subprocess.Popen([sys.executable, "-I", "-c", code, str(level)], stdin=subprocess.PIPE,
                                stdout=sys.stderr.fileno())
    except (OSError, ValueError):  # no process to spare, or a stderr with no file behind it
        return None


def install() -> None:
    """Sift TensorFlow's import, if it is still to come."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietImport())


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's; this ends with its input
    limit = threshold(sys.argv[1] if len(sys.argv) > 1 else None)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if kept(line.decode(errors="replace"), limit):
            out.write(line)
            out.flush()


if __name__ == "__main__":
    main()
