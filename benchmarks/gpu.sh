#!/usr/bin/env bash
# The suite benchmark on a GPU machine with JAX but no TensorFlow and no internet access:
# installs the wheels fetched by benchmarks/gpu_wheels.sh (from .whl/) into /tmp/site, then runs
# benchmarks/suite.py with KERAS_BACKEND=jax. Options go to suite.py; the default is every run of
# the assignment for 10 epochs on 60,000 images, with `reportgen run --jobs 8` per kind as well.
# The table is printed last. A first argument naming another script in benchmarks/ runs that
# script instead, with the same installation and environment.
#
#     bash benchmarks/gpu.sh                       # the whole measurement
#     bash benchmarks/gpu.sh --epochs 2 --only relu-200x100 cnn gan
#     bash benchmarks/gpu.sh compile_time.py relu-200x100 cnn
#     bash benchmarks/gpu.sh xla_options.py            # which XLA settings compile fastest
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 REPORTGEN_BENCH_DATA=mnist-sample
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several worker processes share the GPU under --jobs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import jax, keras; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__)'
if [ "$#" -eq 0 ]; then set -- --jobs 8; fi
script=suite.py
if [[ "$1" == *.py ]]; then script=$1; shift; fi
python3 "benchmarks/$script" "$@"
