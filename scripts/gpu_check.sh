#!/usr/bin/env bash
# The GPU machine's check (`make gpu-check OUT=dir`), sized for a device session: 15 minutes of
# device time in all (the machine's start included), at most 10 minutes per command, at most 8
# files back from $OUT.
#
#   scripts/gpu_check.sh OUT_DIR [STAGE...]      default stages: all of STAGES below, in order
#
# Each stage runs under its own time limit (seconds, below; GPU_CHECK_SCALE=0.5 halves all but
# the build's), trimmed so that the whole call ends within GPU_CHECK_DEADLINE seconds (default
# 540); a stage with under 15 s left is skipped. The next stage runs whatever the last one did,
# so a hang or a failure costs only its own stage. A stage at its limit gets SIGINT, and
# SIGKILL GPU_CHECK_GRACE seconds later (default 10): a benchmark saves the rows it timed so
# far. Stages in order of what the open issues need most: the build and every `gpu` test, then
# the benchmarks of the GPU goals. A session fits two calls back to back (the second on the
# still-warm machine, where the build is kept; its `build` stage then takes seconds, and
# rebuilds if the machine is a fresh one):
#   GPU_CHECK_DEADLINE=420 scripts/gpu_check.sh $OUT build info tests bench-gp
#   GPU_CHECK_DEADLINE=300 scripts/gpu_check.sh $OUT build bench-upsample bench-sn bench-train bench-fid
# Run `make gpu-wheels` here first and name .whl in each device call's carry: the peers that
# the gpu tests and the fid benchmark compare with (not in the device image) then run too.
#
# What comes back in OUT_DIR, 8 files at most: summary.txt (each stage's exit status and
# seconds), gpu-tests.xml, one .jsonl of rows per benchmark (gradient_penalty, upsample_conv,
# spectral_norm, train_step, fid), logs.tar.gz (every stage's full output, and info.json).
# `make report` here then turns committed rows into the README's tables and the auto order.
# The exit status is the worst stage's.
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [STAGE...]}
shift
KNOWN=(build info tests bench-gp bench-upsample bench-sn bench-fid bench-train)
STAGES=("${KNOWN[@]}")
[ $# -gt 0 ] && STAGES=("$@")
for stage in "${STAGES[@]}"; do  # refuse a misspelt stage before any stage runs
  case " ${KNOWN[*]} " in *" $stage "*) ;; *)
    echo "gpu_check: unknown stage $stage (known: ${KNOWN[*]})" >&2; exit 2 ;;
  esac
done
PY=${GPU_PY:-python3}
SCALE=${GPU_CHECK_SCALE:-1}
DEADLINE=${GPU_CHECK_DEADLINE:-540}
GRACE=${GPU_CHECK_GRACE:-10}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} GANFAST_CUDA_ARCHS=${GANFAST_CUDA_ARCHS:-90}

mkdir -p "$OUT/logs" && OUT=$(cd "$OUT" && pwd -P) || exit 2  # absolute: the cd below
[ -f "$OUT/logs.tar.gz" ] && tar -xzf "$OUT/logs.tar.gz" -C "$OUT"  # same OUT again: keep them
# The peers that gpu tests and the fid benchmark compare with (pytorch-fid, torch-fidelity) are
# not in the device image: `make gpu-wheels` puts their wheels in .whl/ (GPU_CHECK_WHEELS, a
# path from where the script is called, like OUT), a device call carries it, and they are
# installed for this run only, apart from the image's packages.
WHEELS=${GPU_CHECK_WHEELS:-$(dirname "$0")/../.whl}
cd "$(dirname "$0")/.." || exit 2

say() { echo "$*" | tee -a "$OUT/summary.txt"; }

peers() {  # the wheels in WHEELS installed for this run, each said importable or not
  local found wheel module broken=""
  compgen -G "$WHEELS/*.whl" > /dev/null || return 0
  found=$(cd "$WHEELS" && echo *.whl)
  PEERS=$(mktemp -d) && [ -d "$PEERS" ] || { say "peers: no temporary folder for $found"; return; }
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$PEERS" "$WHEELS"/*.whl
  then
    say "peers: pip could not install $found: their rows and tests are skipped"
    return
  fi
  rm -rf "${PEERS:?}/tests"  # torch-fidelity's wheel ships a top-level `tests`, ganfast's name
  export PYTHONPATH="$PEERS${PYTHONPATH:+:$PYTHONPATH}"
  for wheel in $found; do  # a wheel's name is its module's here (pytorch_fid, torch_fidelity)
    module=${wheel%%-*}
    "$PY" -c "import $module" 2> /dev/null || broken+=" $module"
  done
  say "peers: $found${broken:+ (not importable:$broken)}"
}
case $WHEELS in /*) ;; *) WHEELS=$OLDPWD/$WHEELS ;; esac  # relative to where it was called
peers

# The device image has pytest-xdist (8 workers share the GPU and compile Triton kernels in
# parallel) and pytest-timeout (one hung test cannot take the stage); used where installed.
PYTEST_EXTRA=()
"$PY" -c "import xdist" 2> /dev/null && PYTEST_EXTRA+=(-n 8)
"$PY" -c "import pytest_timeout" 2> /dev/null && PYTEST_EXTRA+=(--timeout 90)

WORST=0
# run_stage NAME SECONDS SCALED COMMAND...: the command under `timeout` (SIGINT first, SIGKILL
# GRACE seconds later), its output in logs/NAME.log, its limit trimmed to the deadline.
run_stage() {
  local name=$1 limit=$2 scaled=$3 start status left
  shift 3
  [ "$scaled" = yes ] && limit=$(awk -v s="$limit" -v k="$SCALE" \
    'BEGIN { t = int(s * k); print (t < 1 ? 1 : t) }')
  left=$(( DEADLINE - SECONDS - GRACE - 5 ))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped, ${left}s left before the deadline" | tee -a "$OUT/summary.txt"
    return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  start=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=INT --kill-after="$GRACE" "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  status=$?
  [ "$status" -gt "$WORST" ] && WORST=$status
  case $status in
    124) status="124 (time limit)" ;;
    137) status="137 (killed $GRACE s after the time limit)" ;;
  esac
  echo "$name: exit $status, $(( SECONDS - start )) s" | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/logs/$name.log"
}

bench() {  # bench NAME SECONDS ARGS...: ganfast bench with its rows in OUT/NAME.jsonl
  local name=$1 limit=$2
  shift 2
  run_stage "bench-$name" "$limit" yes "$PY" -m ganfast bench "$@" --out "$OUT/$name.jsonl"
}

for stage in "${STAGES[@]}"; do
  case $stage in
    build) run_stage build 240 no "$PY" -m pip install -e . --no-build-isolation --no-deps ;;
    info) run_stage info 30 yes bash -c '"$1" -m ganfast info --json > "$2"' _ "$PY" \
            "$OUT/logs/info.json" ;;
    # -v: each test's outcome is in the log as it happens, should the junit file not be written
    tests) run_stage tests 200 yes "$PY" -m pytest -m gpu "${PYTEST_EXTRA[@]}" -v \
             -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" ;;
    bench-gp) bench gradient_penalty 100 --op gradient_penalty ;;
    bench-upsample) bench upsample_conv 100 --op upsample_conv ;;
    bench-sn) bench spectral_norm 60 --op spectral_norm --no-compile ;;
    bench-train) bench train_step 90 --op train_step --dtype fp32,bf16 ;;
    bench-fid) bench fid 45 --op fid ;;
  esac
done

# At most 8 files come back from the device machine: the logs travel as one archive.
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
echo "== files in $OUT:"; ls -la "$OUT"
exit "$WORST"
