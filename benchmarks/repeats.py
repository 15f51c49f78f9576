"""What N repeats of a dense run cost: one run, N separate runs, and the N repeats stacked into one
program (reportgen/train/tf_stacked.py), side by side in one process on this machine, and how
closely each stacked repeat matches its separate run.

The data are the offline MNIST sample's 4,000 training images tiled to `--images` (default 60,000,
full MNIST's training set, so each epoch takes as many steps as in the full profile) and its 1,000
validation images. Every figure is the wall time of the whole training call: building the models,
tracing the programs, the epochs and the result. A warm-up run comes first, so TensorFlow's start
is not counted.

A shared 2-core machine's speed drifts by a fifth from minute to minute, so each network is timed in
`--trials` rounds, each round one run, the separate runs and the stacked repeats back to back, and
the table gives the medians; "stacked / one" is the median of the rounds' own ratios, with their
range, since a round's figures share its moment's speed.

"floor" is what the repeats cannot share: each repeat's first layer multiplies its own batch (its
own shuffle) by its own kernel, forward and for the kernel's gradient. Those two products of one
network, timed on their own in a loop of 500, times the N - 1 extra repeats' steps, added to one
run, over one run: no stacking of N repeats that keeps each one's own shuffle and this machine's
product speed costs less than that ratio, however little everything else costs.

    python benchmarks/repeats.py [--repeats 5] [--epochs 3] [--images 60000] [--trials 5]
                                 [--nets 10x10,30x100,100x100,200x100]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--nets", default="10x10,30x100,100x100,200x100")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from reportgen.train.machine import tensorflow_environment

    tensorflow_environment()
    import statistics

    import numpy as np

    from reportgen.project.data import load_source
    from reportgen.project.spec import Experiment, MLPSpec
    from reportgen.train.run import stackable, train, train_repeats

    sample = load_source("mnist-sample", REPO, None)
    times = -(-args.images // len(sample.x_train))
    data = dataclasses.replace(sample, x_train=np.tile(sample.x_train, (times, 1, 1))[:args.images],
                               y_train=np.tile(sample.y_train, times)[:args.images])
    folder = REPO / "experiments"

    def run(name: str, layers: list[int]) -> Experiment:
        model = MLPSpec(kind="mlp", hidden_layers=layers, epochs=args.epochs, seed=1)
        return Experiment(name=name, section="1.3", model=model, data="mnist-sample", source=folder / "1.3.toml",
                          repeats=args.repeats)

    def products(width: int) -> float:
        """Seconds one network's first-layer products (forward and kernel gradient) take a step."""
        import tensorflow as tf

        rng = np.random.default_rng(0)
        x, kernel = (tf.constant(rng.random(shape, dtype=np.float32)) for shape in ((128, 784), (784, width)))
        upstream = tf.constant(rng.random((128, width), dtype=np.float32))

        @tf.function(autograph=False)
        def loop() -> object:
            def body(i: object, total: object) -> tuple[object, object]:
                forward = tf.matmul(x, kernel)
                gradient = tf.matmul(x, upstream, transpose_a=True)
                return i + 1, total + forward[0, 0] + gradient[0, 0]
            return tf.while_loop(lambda i, total: i < 500, body, (0, 0.0), parallel_iterations=1)

        loop()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            loop()
            times.append(time.perf_counter() - started)
        return min(times) / 500

    train(run("warm-up", [8]), data, folder)
    print(f"{args.repeats} repeats, {args.epochs} epoch(s) of {len(data.x_train):,} images, batch 128, median of "
          f"{args.trials} rounds; seconds\n")
    print("| network | one run | separate | stacked | separate / one | stacked / one (range) | floor | largest val. "
          "accuracy gap (images) | weights equal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for net in args.nets.split(","):
        exps = run(f"relu-{net}", [int(v) for v in net.split("x")]).with_repeats()
        why = stackable(exps)
        if why:
            raise SystemExit(f"relu-{net}: not stackable here ({why})")
        ones, aparts, togethers = [], [], []
        for _ in range(args.trials):
            started = time.perf_counter()
            train(exps[0], data, folder)
            ones.append(time.perf_counter() - started)
            started = time.perf_counter()
            separate = [train(e, data, folder) for e in exps]
            aparts.append(time.perf_counter() - started)
            started = time.perf_counter()
            stacked = train_repeats(exps, data, folder)
            togethers.append(time.perf_counter() - started)
        one, apart, together = (statistics.median(v) for v in (ones, aparts, togethers))
        ratios = [t / o for t, o in zip(togethers, ones, strict=True)]
        steps = -(-len(data.x_train) // 128) * args.epochs
        floor = (one + (len(exps) - 1) * steps * products(int(net.split("x")[0]))) / one
        gap = max(abs(a.result.final["val_accuracy"] - b.result.final["val_accuracy"])
                  for a, b in zip(separate, stacked, strict=True)) * len(data.y_val)
        equal = sum(a.result.weights_sha256 == b.result.weights_sha256 for a, b in zip(separate, stacked, strict=True))
        print(f"| relu-{net} | {one:.2f} | {apart:.2f} | {together:.2f} | {apart / one:.2f} | "
              f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) | {floor:.2f} | {gap:.0f} "
              f"| {equal} of {len(exps)} |", flush=True)


if __name__ == "__main__":
    main()
