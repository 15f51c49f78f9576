"""Where one run's time goes under JAX: compiling programs against running them.

    KERAS_BACKEND=jax python benchmarks/compile_time.py relu-200x100 cnn --epochs 2 --images 12000

Each named run trains through `reportgen.train.run.train` (the path `reportgen build` takes) in this
interpreter, one after another, so a later run reuses what an earlier one compiled, as in a
sequential build. For each: the seconds of the whole run, how many XLA programs were compiled and
the seconds spent compiling them (on the calling thread and on reportgen's compile threads alike,
so they can add up to more than the run), the slowest programs, and the seconds of each epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FINISHED = re.compile(r"Finished XLA compilation of (\S+) in ([\d.]+) sec")


class Compiles(logging.Handler):
    """Collects JAX's own report of each compilation (jax_log_compiles)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = FINISHED.match(record.getMessage())
        if found:
            self.seen.append((found.group(1), float(found.group(2))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="run names, in the order to train them")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--json", action="store_true", help="also print each run's figures as one JSON line")
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "jax":
        sys.exit("compile_time.py measures JAX compilation: run it with KERAS_BACKEND=jax")

    import jax
    from gan_speed import images

    from reportgen.project.settings import Environment
    from reportgen.project.spec import load_project
    from reportgen.train.machine import device_info
    from reportgen.train.run import train

    jax.config.update("jax_log_compiles", True)
    compiles = Compiles()
    for name in ("jax._src.interpreters.pxla", "jax._src.dispatch", "jax"):
        logger = logging.getLogger(name)
        logger.addHandler(compiles)
        logger.propagate = False  # the handler counts them; nothing printed
    data, described = images(args.images)
    runs = {e.name: e for e in load_project(ROOT).experiments}
    unknown = [n for n in args.names if n not in runs]
    if unknown:
        sys.exit(f"no run named {', '.join(unknown)}; runs: {', '.join(runs)}")
    print(f"{described}; {args.epochs} epoch(s); device {device_info()['name']}", flush=True)
    print(f"{'run':24} {'seconds':>8} {'programs':>9} {'compiling s':>12}  epochs s; slowest programs")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            exp = runs[name]
            exp = replace(exp, model=exp.model.model_copy(update={"epochs": args.epochs}))
            before = len(compiles.seen)
            started = time.perf_counter()
            outcome = train(exp, data, ROOT / "experiments", checkpoints=Path(tmp) / name, key="compile-time",
                            env=Environment.read())  # the REPORTGEN_XLA_* switches, as a build reads them
            seconds = time.perf_counter() - started
            mine = compiles.seen[before:]
            slowest = sorted(mine, key=lambda c: -c[1])[:4]
            epochs = outcome.result.get("history", {}).get("seconds", [])
            print(f"{name:24} {seconds:8.2f} {len(mine):9d} {sum(s for _, s in mine):12.2f}  "
                  f"{' '.join(f'{s:.2f}' for s in epochs)}; "
                  f"{', '.join(f'{p} {s:.2f}' for p, s in slowest)}", flush=True)
            if args.json:
                history = outcome.result.get("history", {})
                quality = {k: history[k][-1] for k in ("val_accuracy", "d_loss") if history.get(k)}
                print("JSON " + json.dumps({"run": name, "seconds": seconds, "programs": len(mine),
                                            "compiling": sum(s for _, s in mine), "epochs": epochs, **quality}),
                      flush=True)


if __name__ == "__main__":
    main()
