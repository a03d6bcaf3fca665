#!/usr/bin/env bash
# The GPU check of issue 11: one CUDA machine, at most 8 minutes, ONE JSON file.
#
#   benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options, e.g. --sections train,infer]
#
# Writes OUT_DIR/gpu_check.json (see benchmarks/gpu_check.py for the sections). Prepare
# first, here: benchmarks/gpu_check_prepare.sh (body model -> .gpucheck/, wheels -> .whl/);
# README "GPU check" gives the device `run` call. The machine needs no network, Ray or anny:
# the carried wheels (smplx, pydantic, roma, ...) are installed to /tmp/site unless they
# import already (the `run` command installs them first, as the device README says).
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [options]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LIMIT_S=${GPU_CHECK_LIMIT_S:-450}   # the whole check, wheel install and CUDA start-up aside

if ! PYTHONPATH=${PYTHONPATH:-} "$PY" -c "import smplx, pydantic, roma" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || echo "[gpu_check] wheel install failed; continuing (sections needing them will fail)" >&2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "[gpu_check] smplx/pydantic/roma missing and no .whl/ folder: run benchmarks/gpu_check_prepare.sh here and carry .whl" >&2
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

timeout -k 10 "$LIMIT_S" "$PY" benchmarks/gpu_check.py --out "$out" "$@"
rc=$?
if [ ! -s "$out/gpu_check.json" ]; then
  printf '{"complete": false, "error": "gpu_check.py wrote no JSON (exit %s)", "sections": {}}\n' "$rc" >"$out/gpu_check.json"
fi
[ "$rc" -eq 124 ] && echo "[gpu_check] stopped at ${LIMIT_S} s; $out/gpu_check.json holds the sections finished by then" >&2
echo "[gpu_check] exit $rc; wrote $out/gpu_check.json"
exit "$rc"
