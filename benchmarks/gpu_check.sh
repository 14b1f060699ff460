#!/usr/bin/env bash
# One-shot GPU check for a lent, bare CUDA machine (see /work/.library/device/README.md):
#   run(command="bash benchmarks/gpu_check.sh", timeout_s=540)
# Uses the machine's python3 (it already holds CUDA torch, triton, lightning, pytest; nothing
# can be downloaded there), installs kgc without dependencies, runs the CUDA-marked tests of
# tests/ (kernels and models) and the kernel and model benchmarks, each under its own time
# limit so the whole script ends within ~8 minutes. Logs go to $OUT (or ./gpu_check_logs).
set -u
OUT="${OUT:-$PWD/gpu_check_logs}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*" | tee -a "$OUT/summary.log"; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1
} | tee "$OUT/env.log"

stamp "pip install -e . (no deps: the image has them)"
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
  || { stamp "install failed (see install.log); falling back to PYTHONPATH"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; }

stamp "pytest -m cuda (kernels, models)"
timeout 240 "$PY" -m pytest -m cuda -q -p no:cacheprovider -o addopts="-ra" tests/kernels tests/models \
  >"$OUT/pytest_cuda.log" 2>&1
stamp "pytest rc=$? ($(tail -1 "$OUT/pytest_cuda.log"))"

stamp "benchmarks/kernels.py"
timeout 150 "$PY" benchmarks/kernels.py >"$OUT/bench_kernels.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  stamp "kernels benchmark rc=$rc; retrying --quick"
  timeout 60 "$PY" benchmarks/kernels.py --quick >>"$OUT/bench_kernels.log" 2>&1
fi
stamp "kernels benchmark done rc=$rc"

if [ -f benchmarks/models.py ]; then
  stamp "benchmarks/models.py"
  timeout 90 "$PY" benchmarks/models.py >"$OUT/bench_models.log" 2>&1
  stamp "models benchmark rc=$?"
else
  stamp "benchmarks/models.py not present; skipped"
fi
stamp "done"
