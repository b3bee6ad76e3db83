#!/usr/bin/env bash
# The suite's GPU checks and figures in one pass on a CUDA machine, most important first:
#   1. the CUDA tests (pytest -k cuda);
#   2. one training step of every estimator x K in {1, 10}, next to the hand-written step and the matmul
#      ceiling (benchmarks/test_steps.py);
#   3. seeds trained as one program, S = 3 to 16, against seeds trained apart (test_seeds_speed.py);
#   4. the variance harness against a plain torch.autograd.grad loop (test_variance_speed.py);
#   5. the compiled step (CUDA graphs) against the eager one (test_seeds_speed.py's compiled cases);
#   6. the quick preset end to end on the GPU (python -m vaebench run --preset quick --device cuda).
#
#   benchmarks/gpu_reference.sh OUTDIR [SECONDS]
#
# Each part writes OUTDIR/<part>.log (and its benchmark JSON); OUTDIR/parts.txt says how each ended. The
# whole pass stops after SECONDS (default 540): a part is cut at what is left, and a part that fails or is
# cut leaves the others' results. Warnings are shown, not raised, in the benchmarks (a newer or older torch
# than the project's pin warns about its own APIs); the tests keep the project's warnings-as-errors and are
# rerun with warnings shown only if a warning is what failed them. DEVICE=cpu checks the script itself;
# PARTS="cuda-tests compiled" runs only those parts (names as in parts.txt).
set -u
out=${1:?usage: benchmarks/gpu_reference.sh OUTDIR [SECONDS]}
deadline=$((SECONDS + ${2:-540}))
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
: >"$out/parts.txt"

part() { # name, limit (s), command...: runs it under the smaller of its limit and the time left
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  [ -n "${PARTS:-}" ] && [[ " $PARTS smoke cuda-tests-warnings-shown " != *" $name "* ]] && return 0
  local left=$((deadline - SECONDS))
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    echo "$name: not run (no time left)" | tee -a "$out/parts.txt"
    return 1
  fi
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "$name: rc=$rc in $((SECONDS - start))s$( ((rc == 124)) && echo ' (cut at its limit)')" | tee -a "$out/parts.txt"
  tail -n 20 "$out/$name.log"
  return $rc
}

bench() { # name, limit, file, pytest arguments...
  local name=$1 limit=$2 file=$3
  shift 3
  part "$name" "$limit" "$py" -m pytest "benchmarks/$file" --benchmark-only -n 0 -p no:cacheprovider -W default \
    --vaebench-device="$device" --benchmark-json="$out/$name.json" "$@"
}

{
  date -u
  nvidia-smi 2>&1
  "$py" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  "$py" -m pip list 2>/dev/null | grep -i -E '^(torch|triton|numpy|pandas|scipy|scikit-learn|matplotlib|pytest|pytest-benchmark) '
  nproc
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

part smoke 60 "$py" -c "import torch, vaebench.cli; torch.zeros(1, device='$device')" || exit 1

part cuda-tests 240 "$py" -m pytest tests -k cuda -n 0 -q -rA -o cache_dir="$out/.pytest_cache"
if [ $? -eq 1 ] && grep -q "Warning" "$out/cuda-tests.log"; then
  part cuda-tests-warnings-shown 120 "$py" -m pytest tests -k cuda -n 0 -q -rA --lf -W default \
    -o cache_dir="$out/.pytest_cache"
fi
bench steps 150 test_steps.py --benchmark-max-time=0.5
bench seeds 120 test_seeds_speed.py -k "not compiled"
bench variance 120 test_variance_speed.py
bench compiled 200 test_seeds_speed.py -k compiled
part quick 120 "$py" -m vaebench run --preset quick --device "$device" --out "$out/quick" --workers 1

echo "== parts"
cat "$out/parts.txt"
