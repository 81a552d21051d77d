#!/usr/bin/env bash
# One short run on a CUDA machine (a few minutes; its budget is 10): the tests marked `cuda` (the
# fused scoring kernel compiled for the GPU, every tile, against the per-class loop; the device
# tests) and `python benchmarks/speed.py --device cuda` (the fused kernel, the loop it replaces,
# DICE, EnergyBased, ResNet-50 forwards in float32 and bfloat16; times and peak memory).
#
# The device machine has PyTorch and Triton but not pytorch-ood: carry its wheel in .whl/
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl pytorch-ood==0.4.0
# then, with the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"],
# timeout_s=600). Logs and results go to $OUT (default benchmarks/results): gpu_pytest_cuda.log,
# speed_cuda.json and speed_cuda.md (its section of earlier runs kept). Copy them into
# benchmarks/results, then update the GPU part of the README's speed section from them.
#   usage: bash benchmarks/gpu_check.sh [pytest arguments]   (default: -m cuda tests)
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export LINE_OOD_CACHE=/tmp/line_cache
unset TRITON_INTERPRET
nvidia-smi -L
python3 -c "import torch, triton, timm, pytorch_ood; print('torch', torch.__version__, 'triton', \
triton.__version__, 'timm', timm.__version__, 'pytorch-ood', pytorch_ood.__version__, \
torch.cuda.get_device_name())" || exit 1
# the tests marked cuda, wherever they are (modules that cannot be collected here are reported)
args=("$@")
[ $# -eq 0 ] && args=(-m cuda tests)
timeout 300 python3 -m pytest -q -rfs -p no:cacheprovider --continue-on-collection-errors \
    "${args[@]}" 2>&1 | tee "$OUT/gpu_pytest_cuda.log" | tail -30
if [ $# -eq 0 ]; then
    # speed.py keeps the section of earlier runs of the speed_cuda.md it finds in --out
    [ -f "$OUT/speed_cuda.md" ] || cp benchmarks/results/speed_cuda.md "$OUT/"
    timeout 240 python3 benchmarks/speed.py --device cuda --out "$OUT" 2>&1 | tail -30
fi
