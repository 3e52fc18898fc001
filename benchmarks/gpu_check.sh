#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one short run (about 5 minutes on an H200):
# the `gpu`-marked tests (CuPy kernels, layers, optimisers and models against the CPU),
# then minicnn on CuPy against PyTorch on CUDA (benchmarks/train_speed.py --device gpu).
# Needs CuPy, and PyTorch with CUDA for the comparison; no data sets (random inputs).
#
#     bash benchmarks/gpu_check.sh OUT_DIR      # logs and JSON land in OUT_DIR
set -u
out=${1:-gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

nvidia-smi -L
"$python" -c "import numpy, cupy; print('numpy', numpy.__version__, '| cupy', cupy.__version__)"
"$python" -c "import numba; print('numba', numba.__version__)" || echo "numba unavailable"

timeout "${TEST_TIMEOUT:-240}" "$python" -m pytest -m gpu -p no:cacheprovider -q -rfEs tests \
    2>&1 | tee "$out/gpu_tests.log"
echo "pytest exit code: ${PIPESTATUS[0]}"

timeout "${BENCH_TIMEOUT:-300}" "$python" benchmarks/train_speed.py --device gpu --no-startup \
    --epochs 2 --models "${MODELS:-lenet,fashion_cnn,model2,mlp,alexnet}" \
    --out "$out/train_speed_gpu.json" 2>&1 | tee "$out/train_speed_gpu.log"
echo "train_speed exit code: ${PIPESTATUS[0]}"
