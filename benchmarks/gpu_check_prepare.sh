#!/usr/bin/env bash
# Prepare the GPU check (benchmarks/gpu_check.sh) for a lent CUDA machine that has no network.
#
#   benchmarks/gpu_check_prepare.sh            # run here, in the repo root, with the venv built
#
# 1. copies the built open body model pkl into .gpucheck/ (git-ignored; carried with `carry`);
# 2. downloads the pure-Python / cp312 wheels the lent machine lacks into .whl/ (git-ignored),
#    at the versions installed in .venv, exactly as the device README's recipe says;
# 3. prints the sizes: everything that travels must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export ANNOTATOR_CACHE_DIR=${ANNOTATOR_CACHE_DIR:-$PWD/.cache/annotator}
export ANNY_CACHE_DIR=${ANNY_CACHE_DIR:-$ANNOTATOR_CACHE_DIR/anny}

# --- 1. the body model (built here from anny if the cache lacks it)
pkl=$("$PY" -c 'from annotator.body.open_model import ensure_open_model; from annotator.config import BodyModelConfig; print(ensure_open_model(BodyModelConfig().cache_dir))')
mkdir -p .gpucheck
cp "$pkl" .gpucheck/SMPL_NEUTRAL.pkl
echo "body model: $pkl -> .gpucheck/SMPL_NEUTRAL.pkl"

# --- 2. wheels, one version of each, pinned to what .venv runs
pins=$("$PY" - <<'PYEOF'
import importlib.metadata as m
names = ["smplx", "roma", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
print(" ".join(f"{n}=={m.version(n)}" for n in names))
PYEOF
)
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
echo "wheels ($pins):"
ls -l .whl

# --- 3. what travels: tracked + untracked-not-ignored files + the carried .whl and .gpucheck
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .whl .gpucheck | tail -1 | cut -f1)
total=$((tree + carried))
echo "travels: tree $((tree / 1048576)) MiB + .whl/.gpucheck $((carried / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
if [ "$total" -ge $((60 * 1048576)) ]; then
  echo "too close to the 64 MiB limit" >&2
  exit 1
fi
