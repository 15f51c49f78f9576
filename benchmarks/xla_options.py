"""Which XLA settings make reportgen's JAX runs compile and train fastest on this machine's GPU.

    bash benchmarks/gpu.sh xla_options.py                      # every setting, relu-200x100 cnn gan
    bash benchmarks/gpu.sh xla_options.py --only default triton-off --runs relu-200x100
    KERAS_BACKEND=jax python benchmarks/xla_options.py --images 4000 --epochs 1   # a dry run on a CPU

Each setting runs benchmarks/compile_time.py in a fresh interpreter (XLA keeps autotuning results
in memory for the life of a process) with no compiled-program cache, so every setting compiles
from nothing: the settings are REPORTGEN_XLA_OPTIONS (XLA compile options reportgen adds to its
training loops' programs) and JAX's own switches, given as environment variables. Prints, per
setting and run, the run's seconds, the seconds spent compiling, the last epoch's seconds
(arithmetic once compiled) and the final validation accuracy (GAN: discriminator loss), to check
that a faster setting trains the same; a setting this XLA refuses, or that crashes, says so in its
row. Each setting's rows are printed as it ends and the whole table again last; a setting gets
--timeout seconds (default 80), so the six settings fit one 10-minute device call. The default
setting is what reportgen does unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_TRITON = {"xla_gpu_enable_triton_gemm": False}  # dots go to cuBLAS: no kernel to generate and compile
# Each setting: the environment it adds; those likelier to help first.
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "triton-off": {"REPORTGEN_XLA_OPTIONS": json.dumps(NO_TRITON)},
    "triton-off+threefry-kernel": {"REPORTGEN_XLA_OPTIONS": json.dumps(NO_TRITON),
                                   "JAX_THREEFRY_GPU_KERNEL_LOWERING": "true"},  # weight initialisers
    "triton-off+llvm-parallel": {"REPORTGEN_XLA_OPTIONS": json.dumps(
        {**NO_TRITON, "xla_gpu_enable_llvm_module_compilation_parallelism": True})},
    "triton-off+ptxas-O0": {"REPORTGEN_XLA_OPTIONS": json.dumps(
        {**NO_TRITON, "xla_gpu_disable_gpuasm_optimizations": True})},
    "triton-off+graph-loops": {"REPORTGEN_XLA_OPTIONS": json.dumps(  # a device loop as one CUDA graph
        {**NO_TRITON, "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
         "xla_gpu_graph_min_graph_size": 1})},
}
CLEARED = ("REPORTGEN_XLA_OPTIONS", "JAX_COMPILATION_CACHE_DIR",
           "JAX_THREEFRY_GPU_KERNEL_LOWERING")


def measure(setting: str, runs: list[str], epochs: int, images: int, timeout: float) -> dict[str, dict]:
    """compile_time.py over `runs` under one setting: its figures by run, or why a run has none.
    A setting that runs out of time keeps the figures of the runs it finished."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(SETTINGS[setting])
    command = [sys.executable, str(ROOT / "benchmarks" / "compile_time.py"), *runs, "--epochs", str(epochs),
               "--images", str(images), "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        stdout, failure = done.stdout, ""
        if done.returncode != 0:
            failure = f"exit {done.returncode}: " + (done.stderr.strip().splitlines() or ["(no output)"])[-1][:160]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        stdout, failure = out.decode() if isinstance(out, bytes) else out, f"not done in {timeout:.0f} s"
    found = {}
    for line in stdout.splitlines():
        if line.startswith("JSON "):
            row = json.loads(line[5:])
            found[row["run"]] = row
    for run in runs:
        found.setdefault(run, {"error": failure or "no figures"})
    return found


HEADER = f"{'setting':28} {'run':14} {'seconds':>8} {'compiling s':>12} {'last epoch s':>13}  quality"


def row_text(setting: str, run: str, row: dict) -> str:
    if "error" in row:
        return f"{setting:28} {run:14} {row['error']}"
    quality = (f"val_accuracy {row['val_accuracy']:.4f}" if "val_accuracy" in row
               else f"d_loss {row.get('d_loss', float('nan')):.3f}")
    last = row["epochs"][-1] if row["epochs"] else float("nan")
    return f"{setting:28} {run:14} {row['seconds']:8.2f} {row['compiling']:12.2f} {last:13.2f}  {quality}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["relu-200x100", "cnn", "gan"])
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--timeout", type=float, default=80, help="seconds one setting may take")
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "jax":
        sys.exit("xla_options.py measures JAX compilation: run it with KERAS_BACKEND=jax")
    print(f"Settings: {', '.join(args.only)}; runs {' '.join(args.runs)}, {args.epochs} epoch(s), "
          f"{args.images} images", flush=True)
    print(HEADER, flush=True)
    rows = {}
    for setting in args.only:  # each setting's rows as soon as it ends: a cut-off call keeps them
        started = time.perf_counter()
        rows[setting] = measure(setting, args.runs, args.epochs, args.images, args.timeout)
        for run in args.runs:
            print(row_text(setting, run, rows[setting][run]), flush=True)
        print(f"  ({setting}: {time.perf_counter() - started:.1f} s in all)", flush=True)
    print("\n" + HEADER)
    for setting, found in rows.items():
        for run in args.runs:
            print(row_text(setting, run, found[run]))


if __name__ == "__main__":
    main()
