"""The assignment's runs, plain Keras against reportgen, per model kind and for the whole suite.

    python benchmarks/suite.py                                   # every run, 10 epochs, 60,000 images
    python benchmarks/suite.py --epochs 1 --images 12000 --only relu-200x100 cnn gan
    python benchmarks/suite.py --bf16 --only relu-200x100 cnn   # also reportgen in mixed_bfloat16
    python benchmarks/suite.py --jobs 4                          # also `reportgen run --jobs 4`, per kind
    python benchmarks/suite.py --sides reportgen                 # reportgen alone (no baseline, no ratios)
    python benchmarks/suite.py --sides --jobs 8                  # `reportgen run --jobs 8` alone
    python benchmarks/suite.py --repeat 3                        # each side of each run 3 times, medians
    KERAS_BACKEND=jax python benchmarks/suite.py                 # where JAX is installed

The baseline is what a student writes: for a classifier, the same model (built by reportgen's own
builder, so the networks are identical, but with Keras' L2 penalty even at strength 0, which
reportgen leaves out) compiled with the same optimizer and `model.fit` on NumPy arrays with
`validation_data`; for a GAN, the `train_on_batch` loop of benchmarks/gan_speed.py.
reportgen's side is `reportgen.train.run.train`, the path `reportgen build` takes (it also predicts the
validation set for the misclassified-image grid, and a GAN draws its samples and checkpoints).
Same data, batch size, epochs and seeds on both sides. Each side of each run trains in a fresh
interpreter, so neither inherits the other's state (TensorFlow's determinism switch, allocator,
thread pools), timed from model construction to the end of training. Prints the seconds and final
validation accuracy (GAN: losses) of each run, then a table per kind and for the suite, with the ratio.

On a shared machine one timing can be a fifth off (relu-200x200's baseline, trained three times
on a 2-core cloud machine, took 19.4 to 23.1 s). With --repeat N each side of each run
trains N times, the sides taking turns so that a slow spell falls on both, and every figure is a
side's median, with its spread in the run's line. Accuracies and losses are the first repeat's.

With --jobs N, each kind's runs are then also trained by the command a user types,
`reportgen run --jobs N --only <those runs>`, on a copy of the project (fresh cache) reading the
same images from a file, timed from the command's start to its end (interpreters, data loading
and worker start-up included); that wall time is the last column. GANs go last, so the
classifier their mode-collapse view needs is already cached and not timed as theirs (when
that classifier is not among the chosen runs, its training counts as the GAN's). The suite's
row in that column is one more command over every chosen run at once, on another fresh copy:
what `reportgen run --jobs N` takes for the whole assignment.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The environment every child starts from: the user's, before this process sets anything. Asking
# reportgen for the device sets TensorFlow's oneDNN switch here, and children inheriting it gave
# the baseline reportgen's kernels (the CNN then measured 1.01x).
USER_ENV = dict(os.environ)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gan_speed import baseline as gan_baseline  # noqa: E402
from gan_speed import images  # noqa: E402

from reportgen.project.data import Dataset  # noqa: E402
from reportgen.project.spec import Experiment, GANSpec, load_project  # noqa: E402


def plain_keras(exp: Experiment, data: Dataset) -> dict[str, float]:
    """model.fit on NumPy arrays, the way a notebook does it: Keras' own optimizer classes, and
    TensorFlow with the environment this machine gives it."""
    import keras

    from reportgen.train import models

    keras.utils.set_random_seed(exp.model.seed)
    started = time.perf_counter()
    model = models.build(exp, ROOT / "experiments", shape=data.input_shape, classes=data.num_classes,
                         plain=True)  # a penalty of strength 0 stays in
    model.compile(optimizer=models.optimizer(exp.model, fused=False), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(data.x_train / 255.0, data.y_train, batch_size=exp.model.batch_size, epochs=exp.model.epochs,
                        validation_data=(data.x_val / 255.0, data.y_val), verbose=0)
    return {"seconds": time.perf_counter() - started, "val_accuracy": history.history["val_accuracy"][-1]}


def with_reportgen(exp: Experiment, data: Dataset) -> dict[str, float]:
    import keras  # noqa: F401  # imported before the clock starts, as on the baseline's side

    from reportgen.train.run import train

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train(exp, data, ROOT / "experiments", checkpoints=Path(tmp) / "ck", key="bench")
    final = outcome.result["final"]
    out = {"seconds": time.perf_counter() - started}
    out.update({k: final[k] for k in ("val_accuracy", "d_loss", "g_loss") if k in final})
    return out


def bench_project(tmp: Path, data: Dataset, epochs: int) -> tuple[Path, Path]:
    """A copy of the project whose runs all train `epochs` epochs, and `data` as an .npz in Keras'
    MNIST format; its cache starts empty."""
    import re
    import shutil

    import numpy as np

    root = tmp / "project"
    shutil.copytree(ROOT / "experiments", root / "experiments")
    for toml in (root / "experiments").glob("*.toml"):
        toml.write_text(re.sub(r"(?m)^epochs = \d+", f"epochs = {epochs}", toml.read_text()))
    npz = tmp / "mnist.npz"
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_test=data.x_val, y_test=data.y_val)
    return root, npz


def command_wall(root: Path, npz: Path, names: list[str], jobs: int) -> float:
    """Seconds of `reportgen run --jobs N --only NAMES` on the bench project. Runs a name depends
    on (a GAN's mode-collapse classifier) are trained by an earlier kind's command and cached, so
    each command trains its own kind's runs only."""
    command = [sys.executable, "-m", "reportgen", "run", "-C", str(root), "--full", "--data-file", str(npz),
               "--jobs", str(jobs)]
    for name in names:
        command += ["--only", name]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=USER_ENV)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"reportgen run --jobs {jobs} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def one_side(exp: Experiment, data: Dataset, side: str) -> dict[str, float]:
    if side == "reportgen-bf16":
        out = with_reportgen(replace(exp, model=exp.model.model_copy(update={"precision": "mixed_bfloat16"})), data)
    elif side == "reportgen":
        out = with_reportgen(exp, data)
    elif isinstance(exp.model, GANSpec):
        base = gan_baseline(exp.model, data.x_train, exp.model.epochs)
        out = {"seconds": sum(base["seconds"]), "d_loss": base["d_loss"], "g_loss": base["g_loss"]}
    else:
        out = plain_keras(exp, data)
    import keras

    from reportgen.train.machine import onednn_enabled

    if keras.backend.backend() == "tensorflow":  # which CPU kernels this side ran: 1 oneDNN, 0 Eigen
        out["onednn"] = float(bool(onednn_enabled()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every run (default 10)")
    parser.add_argument("--images", type=int, default=60000, help="training images (default 60000)")
    parser.add_argument("--only", nargs="*", default=[], help="run names or globs (default: every run)")
    parser.add_argument("--repeat", type=int, default=1, help="times each side of each run trains; medians (default 1)")
    parser.add_argument("--bf16", action="store_true", help="also time reportgen in mixed_bfloat16 precision")
    parser.add_argument("--jobs", type=int, default=0, help="also time `reportgen run --jobs N` per kind")
    parser.add_argument("--sides", nargs="*", choices=["baseline", "reportgen"], default=["baseline", "reportgen"],
                        help="which sides to time per run (default both; one alone gives no ratios, none with "
                             "--jobs times the command alone)")
    parser.add_argument("--side", choices=["baseline", "reportgen", "reportgen-bf16"],
                        help=argparse.SUPPRESS)  # one child run
    args = parser.parse_args()
    if args.side and args.side.startswith("reportgen"):
        from reportgen.train.machine import tensorflow_environment

        tensorflow_environment()  # before anything imports keras, as `reportgen` does

    data, described = images(args.images)
    chosen = [e for e in load_project(ROOT).experiments
              if not args.only or any(fnmatch.fnmatchcase(e.name, p) for p in args.only)]
    chosen = [replace(e, model=e.model.model_copy(update={"epochs": args.epochs})) for e in chosen]
    if args.side:  # a child: one side of one run, its figures as JSON on the last line
        print(json.dumps(one_side(chosen[0], data, args.side)))
        return

    import keras

    from reportgen.train.machine import device_info

    print(f"{len(chosen)} run(s), {args.epochs} epoch(s), {described}; backend {keras.backend.backend()} "
          f"{keras.__version__}; device {device_info()['name']}", flush=True)

    def child(exp: Experiment, side: str) -> dict[str, float]:
        done = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs), "--images", str(args.images),
                               "--only", exp.name, "--side", side], capture_output=True, text=True, env=USER_ENV)
        if done.returncode != 0:
            sys.exit(f"{exp.name} ({side}) failed:\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def repeated(exp: Experiment, sides: list[str]) -> list[dict[str, float]]:
        """Each side's first figures with its median seconds and their spread over --repeat turns."""
        times: list[list[float]] = [[] for _ in sides]
        firsts: list[dict[str, float]] = []
        for turn in range(max(1, args.repeat)):
            for i, side in enumerate(sides):
                out = child(exp, side)
                times[i].append(out["seconds"])
                if turn == 0:
                    firsts.append(out)
        return [{**first, "seconds": statistics.median(t), "low": min(t), "high": max(t)}
                for first, t in zip(firsts, times, strict=True)]

    def spread(out: dict[str, float]) -> str:
        return f" ({out['low']:.1f}-{out['high']:.1f})" if args.repeat > 1 and "low" in out else ""

    nan = {"seconds": float("nan"), "val_accuracy": float("nan"), "d_loss": float("nan")}  # a side not timed
    rows, mixed = [], []
    for exp in chosen:
        timed = iter(repeated(exp, [side for side in ("baseline", "reportgen") if side in args.sides]))
        base = next(timed) if "baseline" in args.sides else nan
        ours = next(timed) if "reportgen" in args.sides else nan
        rows.append((exp, base, ours))
        if not args.sides:
            continue
        quality = (f"val_accuracy {base['val_accuracy']:.4f} / {ours['val_accuracy']:.4f}"
                   if "val_accuracy" in base and "val_accuracy" in ours
                   else f"d_loss {base['d_loss']:.3f} / {ours['d_loss']:.3f}")
        if "onednn" in base and "onednn" in ours:
            quality += "   oneDNN " + " / ".join("on" if side["onednn"] else "off" for side in (base, ours))
        print(f"  {exp.name:24} baseline {base['seconds']:7.1f} s{spread(base)}   reportgen {ours['seconds']:7.1f} s"
              f"{spread(ours)}   x{base['seconds'] / ours['seconds']:.2f}   {quality}", flush=True)
        if args.bf16:
            bf = repeated(exp, ["reportgen-bf16"])[0]
            mixed.append((exp, ours, bf))
            quality = (f"val_accuracy {bf['val_accuracy']:.4f}" if "val_accuracy" in bf
                       else f"d_loss {bf['d_loss']:.3f}")
            print(f"  {'':24} reportgen mixed_bfloat16 {bf['seconds']:7.1f} s{spread(bf)} "
                  f"(x{ours['seconds'] / bf['seconds']:.2f} against float32)   {quality}", flush=True)

    kinds = sorted({e.model.kind for e, _, _ in rows})
    walls: dict[str, float] = {}
    if args.jobs:
        with tempfile.TemporaryDirectory(prefix="reportgen-bench-") as tmp:
            root, npz = bench_project(Path(tmp), data, args.epochs)
            for kind in sorted(kinds, key=lambda k: k == "gan"):  # GANs last: they need classifiers
                names = [e.name for e, _, _ in rows if e.model.kind == kind]
                walls[kind] = command_wall(root, npz, names, args.jobs)
                print(f"  reportgen run --jobs {args.jobs} --only <{len(names)} {kind} run(s)>: "
                      f"{walls[kind]:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="reportgen-bench-") as tmp:  # the whole suite, one command
            root, npz = bench_project(Path(tmp), data, args.epochs)
            walls["suite"] = command_wall(root, npz, [e.name for e, _, _ in rows], args.jobs)
            print(f"  reportgen run --jobs {args.jobs} --only <all {len(rows)} run(s)>, fresh cache: "
                  f"{walls['suite']:.1f} s", flush=True)

    print()
    jobs_head = f" {'--jobs ' + str(args.jobs) + ' s':>12} {'speed-up':>9}" if args.jobs else ""
    print(f"{'kind':8} {'runs':>5} {'baseline s':>11} {'reportgen s':>12} {'speed-up':>9}{jobs_head}")
    for kind in [*kinds, "suite"]:
        picked = [(b, o) for e, b, o in rows if kind in ("suite", e.model.kind)]
        base_s, ours_s = sum(b["seconds"] for b, _ in picked), sum(o["seconds"] for _, o in picked)
        line = f"{kind:8} {len(picked):5d} {base_s:11.1f} {ours_s:12.1f} {base_s / ours_s:8.2f}x"
        if args.jobs:
            line += f" {walls[kind]:12.1f} {base_s / walls[kind]:8.2f}x"
        print(line)
    if mixed:
        print()
        # Classifiers: final validation accuracy; GANs, which have none: the final discriminator loss.
        print(f"{'run':24} {'float32 s':>10} {'bf16 s':>8} {'speed-up':>9} {'float32':>16} {'bf16':>16}")
        for exp, ours, bf in mixed:
            quality = [f"acc {r['val_accuracy']:.4f}" if "val_accuracy" in r else f"d_loss {r['d_loss']:.3f}"
                       for r in (ours, bf)]
            print(f"{exp.name:24} {ours['seconds']:10.1f} {bf['seconds']:8.1f} {ours['seconds'] / bf['seconds']:8.2f}x "
                  f"{quality[0]:>16} {quality[1]:>16}")


if __name__ == "__main__":
    main()
