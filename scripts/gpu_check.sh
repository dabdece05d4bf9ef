#!/usr/bin/env bash
# The GPU machine's check (`make gpu-check OUT=dir`), sized for a device session: 15 minutes of
# device time in all, at most 10 minutes per command, at most 8 files back from $OUT.
#
#   scripts/gpu_check.sh OUT_DIR [STAGE...]      default stages: all of STAGES below, in order
#
# Each stage runs under its own time limit (seconds, below; GPU_CHECK_SCALE=0.5 halves them
# all) and the next stage runs whatever the last one did, so a hang or a failure costs only its
# own stage. A benchmark stopped at its limit gets SIGINT and saves the rows it timed so far.
# Stages in order of what the open issues need most: the build and every `gpu` test first,
# then the benchmarks of the GPU goals (penalty, upsample-conv in bf16, spectral norm, FID,
# whole training steps). Two calls fit a session: `build tests bench-gp` (about 6 minutes at
# most) and then, on the still-warm machine (the build stays), `bench-upsample bench-sn
# bench-fid bench-train`.
#
# What comes back in OUT_DIR: summary.txt (each stage's exit status and seconds), info.json,
# gpu-tests.xml, one .jsonl of rows per benchmark (gradient_penalty, upsample_conv,
# spectral_norm, train_step), logs.tar.gz (every stage's full output). `make report` here then
# turns committed rows into the README's tables and the auto order.
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [STAGE...]}
shift
STAGES=(build info tests bench-gp bench-upsample bench-sn bench-fid bench-train)
[ $# -gt 0 ] && STAGES=("$@")
PY=${GPU_PY:-python3}
SCALE=${GPU_CHECK_SCALE:-1}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} GANFAST_CUDA_ARCHS=${GANFAST_CUDA_ARCHS:-90}

mkdir -p "$OUT/logs"
# A second call into the same OUT keeps the first one's logs (one archive, see the end).
[ -f "$OUT/logs.tar.gz" ] && tar -xzf "$OUT/logs.tar.gz" -C "$OUT"
cd "$(dirname "$0")/.."

# The device image has pytest-xdist (8 workers share the GPU and compile Triton kernels in
# parallel) and pytest-timeout (one hung test cannot take the stage); used where installed.
PYTEST_EXTRA=()
"$PY" -c "import xdist" 2> /dev/null && PYTEST_EXTRA+=(-n 8)
"$PY" -c "import pytest_timeout" 2> /dev/null && PYTEST_EXTRA+=(--timeout 240)

# run_stage NAME SECONDS COMMAND...: the command under `timeout` (SIGINT first, so Python
# benchmarks keep their rows; SIGKILL 20 s later), its output in logs/NAME.log.
run_stage() {
  local name=$1 limit=$2 start status
  shift 2
  limit=$(awk -v s="$limit" -v k="$SCALE" 'BEGIN { t = int(s * k); print (t < 1 ? 1 : t) }')
  start=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=INT --kill-after=20 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  status=$?
  [ "$status" -eq 124 ] && status="124 (time limit)"
  echo "$name: exit $status, $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/logs/$name.log"
}

bench() {  # bench NAME SECONDS ARGS...: ganfast bench with its rows in OUT/NAME.jsonl
  local name=$1 limit=$2
  shift 2
  run_stage "bench-$name" "$limit" "$PY" -m ganfast bench "$@" --out "$OUT/$name.jsonl"
}

for stage in "${STAGES[@]}"; do
  case $stage in
    build) run_stage build 240 "$PY" -m pip install -e . --no-build-isolation --no-deps ;;
    info) run_stage info 60 bash -c "'$PY' -m ganfast info --json > '$OUT/info.json'" ;;
    tests) run_stage tests 300 "$PY" -m pytest -m gpu "${PYTEST_EXTRA[@]}" -q -p no:cacheprovider \
             --junitxml="$OUT/gpu-tests.xml" ;;
    bench-gp) bench gradient_penalty 150 --op gradient_penalty ;;
    bench-upsample) bench upsample_conv 180 --op upsample_conv ;;
    bench-sn) bench spectral_norm 120 --op spectral_norm --no-compile ;;
    bench-fid) run_stage bench-fid 90 "$PY" -m ganfast bench --op fid ;;
    bench-train) bench train_step 150 --op train_step --dtype fp32,bf16 ;;
    *) echo "gpu_check: unknown stage $stage (known: build info tests bench-gp bench-upsample" \
            "bench-sn bench-fid bench-train)" >&2; exit 2 ;;
  esac
done

# At most 8 files come back from the device machine: the logs travel as one archive.
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
echo "== files in $OUT:"; ls -la "$OUT"
