#!/usr/bin/env bash
# One command on a GPU machine (prepare.sh first, where there is PyPI):
#   benchmarks/gpu/run.sh [quick]
# installs the carried wheels (where Dask is missing), builds the CPU engine in place, runs every
# GPU-marked test on the GPU, then benchmarks/bench_gpu.py at full size
# (100M texts; about 6 minutes on one H100, estimated, never yet measured)
# or, with `quick`, at 1M texts. Logs and results go to $OUT (the device
# tool's folder) or benchmarks/out. GPU_CURATE_EMULATE=1 dry-runs the whole
# script on the emulated device: its figures are not a GPU's.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
if ! python3 -c "import dask, distributed" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_curate_site .whl/*.whl
    export PYTHONPATH=/tmp/gpu_curate_site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .data ] && export GPU_CURATE_SHARED_DATA="$PWD/.data"
python3 setup.py -q build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true; } | tee "$OUT/gpu.txt"
python3 -c "import sys; from gpu_curate import gpu_backend as g; print('python', sys.version.split()[0], 'cupy', getattr(g.cupy(), '__version__', 'emulated'))" | tee -a "$OUT/gpu.txt"
set +e
python3 -m pytest -q -m gpu -p no:cacheprovider -x 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
tests=${PIPESTATUS[0]}
set -e
if [ "${1:-}" = quick ]; then
    sizes=(--texts 1000000 --cpu-texts 1000000 --baseline-texts 100000 --end-to-end-rows 2000000 --partition-rows 1000000)
else
    sizes=()
fi
python3 benchmarks/bench_gpu.py "${sizes[@]}" --json "$OUT/bench_gpu.jsonl" 2>&1 | tee "$OUT/bench_gpu.log"
exit "$tests"
