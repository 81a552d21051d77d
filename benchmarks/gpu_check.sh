#!/usr/bin/env bash
# One short run on a CUDA machine: the test suite (its CUDA tests included) and the speed
# benchmark on the GPU. The device machine has no ../shared: expects a copy of the shared data
# and models in .gpu_shared/ (the 64 MiB transfer limit leaves part of the models behind, so the
# tests that need them are re-run with `pytest --lf` after carrying those), and pytorch-ood's wheel
# in .whl/. Writes logs and results to $OUT (default benchmarks/results).
#   usage: bash benchmarks/gpu_check.sh [pytest arguments]   (default: tests)
set -uo pipefail
OUT=${OUT:-benchmarks/results}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LINE_OOD_DATA=$PWD/.gpu_shared/data LINE_OOD_MODELS=$PWD/.gpu_shared/models
export LINE_OOD_CACHE=/tmp/line_cache
nvidia-smi -L
python3 -c "import torch, timm, pytorch_ood; print('torch', torch.__version__, 'timm', \
timm.__version__, 'pytorch-ood', pytorch_ood.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -n 8 -rfs "${@:-tests}" 2>&1 | tee "$OUT/gpu_pytest.log" | tail -40
if [ $# -eq 0 ]; then
    python3 benchmarks/speed.py --device cuda --out "$OUT" 2>&1 | tail -14
fi
