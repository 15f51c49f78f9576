"""How long regenerating the report takes after the edits a writer makes, side by side in one run.

On a copy of the shipped project (quick profile), each step a separate `reportgen` process, so the
interpreter's start and the imports count as a user waits for them:

  1. the build from an empty cache (trains every run);
  2. the same build again, nothing changed;
  3. one commentary sentence added: when report.html is rewritten, and when the command is done (PDF);
  4. the stylesheet changed (a project template);
  5. one lambda of section 1.4 changed, and the commentary that names its run (that run retrains);
  6. status, list, check and doctor.

Each is printed in seconds and as a share of the build from empty. `--source DIR` runs another
checkout's reportgen (PYTHONPATH=DIR) with the same interpreter, for a before-and-after table.

    python benchmarks/rebuild.py [--source DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict[str, str], watch: Path | None = None) -> tuple[float, float | None, str]:
    """Seconds the command took, seconds until `watch` was rewritten (None: not watched or never), output."""
    before = watch.stat().st_mtime_ns if watch is not None and watch.exists() else None
    started = time.perf_counter()
    # Started outside any checkout: `python -m` puts the working folder first on sys.path.
    process = subprocess.Popen([sys.executable, "-m", "reportgen", *args], env=env, cwd=env["TMPDIR"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = None
    while process.poll() is None:
        if watch is not None and seen is None and watch.exists() and watch.stat().st_mtime_ns != before:
            seen = time.perf_counter() - started
        time.sleep(0.01)
    total = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if watch is not None and seen is None and watch.exists() and watch.stat().st_mtime_ns != before:
        seen = total
    return total, seen, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose reportgen runs")
    parser.add_argument("--keep", action="store_true", help="keep the project copy and print where it is")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reportgen-rebuild-"))
    try:
        project = work / "project"
        shutil.copytree(REPO / "experiments", project / "experiments")
        (project / "experiments" / "commentary.lock.json").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(args.source.resolve()), "COLUMNS": "200",
               "REPORTGEN_CACHE": str(work / "cache"), "MPLCONFIGDIR": str(work / "mpl"), "TMPDIR": str(work)}
        html = project / "build" / "report.html"
        rows: list[tuple[str, float, float | None]] = []

        def step(name: str, command: list[str], watch: Path | None = None) -> None:
            total, seen, output = run(command, env, watch)
            if "Error" in output and "check" not in command:
                raise SystemExit(f"{name} failed:\n{output}")
            rows.append((name, total, seen))
            print(f"  {name}: {total:.2f} s" + (f" (report.html after {seen:.2f} s)" if seen is not None else ""),
                  flush=True)

        build = ["build", "--quick", "-C", str(project)]
        step("build from an empty cache", build, html)
        step("nothing changed", build, html)
        step("nothing changed, again", build, html)
        with (project / "experiments" / "1.5-tanh.md").open("a") as f:
            f.write("\nA sentence added while writing.\n")
        step("commentary changed", build, html)
        (project / "templates").mkdir(exist_ok=True)
        style = (REPO / "templates" / "style.css").read_text()
        (project / "templates" / "style.css").write_text(style + "\nh2 { letter-spacing: 0.01em; }\n")
        step("stylesheet changed", build, html)
        toml = project / "experiments" / "1.4-regularisation.toml"
        text = toml.read_text()
        if "1e-8]" not in text:
            raise SystemExit("1.4-regularisation.toml has no strength 1e-8 to change")
        toml.write_text(text.replace("1e-8]", "2e-8]", 1))
        prose = project / "experiments" / "1.4-regularisation.md"  # the commentary names the run
        prose.write_text(prose.read_text().replace("l2-1e-08", "l2-2e-08"))
        step("one lambda changed (one run retrains)", build, html)
        for command in ("status", "list", "check"):
            step(command, [command, "-C", str(project)])
        step("doctor", ["doctor", "-C", str(project)])

        empty = rows[0][1]
        print(f"\n{'step':<40} {'seconds':>8} {'HTML at':>8} {'share':>7}")
        for name, total, seen in rows:
            print(f"{name:<40} {total:8.2f} {(f'{seen:.2f}' if seen is not None else '-'):>8} {total / empty:7.1%}")
    finally:
        if args.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
