#!/usr/bin/env bash
# The GPU machine's check (`make gpu-check OUT=dir`), sized for a device session: 15 minutes of
# device time in all (the machine's start included), at most 10 minutes per command, at most 8
# files back from $OUT.
#
#   scripts/gpu_check.sh OUT_DIR [STAGE...]      default stages: all of STAGES below, in order
#
# Each stage runs under its own time limit (seconds, below; GPU_CHECK_SCALE=0.5 halves all but
# the build's), trimmed so that the whole call ends within GPU_CHECK_DEADLINE seconds (default
# 540; whole seconds, `420`, not `420s`: a value that is not a number is refused before any
# stage); a stage with under 15 s left is skipped. GPU_CHECK_DRY_RUN=1 runs nothing (but the
# peers' install) and says what each stage would run, with its limit, assuming each stage
# before it took its whole limit: the worst case, a fresh machine's build (240 s) included;
# GPU_CHECK_DRY_BUILD_S=10 shows a warm machine's, where the build is kept. The next stage
# runs whatever the last one did,
# so a hang or a failure costs only its own stage. A stage at its limit gets SIGINT, and
# SIGKILL GPU_CHECK_GRACE seconds later (default 10): a benchmark saves the rows it timed so
# far. Stages in order of what the open issues need most: the build and every `gpu` test, then
# the benchmarks of the GPU goals. A session fits two calls back to back (the second on the
# still-warm machine, where the build is kept; its `build` stage then takes seconds, and
# rebuilds if the machine is a fresh one):
#   GPU_CHECK_DEADLINE=420 scripts/gpu_check.sh $OUT build info tests bench-gp
#   GPU_CHECK_DEADLINE=300 scripts/gpu_check.sh $OUT build bench-upsample bench-sn bench-fid bench-train
# (the second's stages in the order the issues' GPU goals need them: bench-train, last, gets what
# the others leave, 40 s at the least on a warm machine; GPU_CHECK_DRY_RUN=1 shows it)
# Run `make gpu-wheels` here first and name .whl in each device call's carry: the peers that
# the gpu tests and the fid benchmark compare with (not in the device image) then run too.
#
# What comes back in OUT_DIR, 8 files at most: summary.txt (each stage's exit status and
# seconds; the build's says whether ganfast._C loads), gpu-tests.xml, one .jsonl of rows per
# benchmark (gradient_penalty, upsample_conv, spectral_norm, train_step, fid), logs.tar.gz
# (every stage's full output, the build's with nvcc's, and info.json). The archive is renewed
# as each stage ends and only the running stage's log is in OUT/logs: a call cut short by the
# device tool's own limit still brings back the finished stages' logs, within the 8 files.
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
DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
DRY_BUILD=${GPU_CHECK_DRY_BUILD_S:-}
# Refused before any stage: in the arithmetic below `420s` made every stage fail its deadline
# check silently (all skipped, exit 0) and `abc` stopped the script with no summary.
for setting in "GPU_CHECK_DEADLINE=$DEADLINE" "GPU_CHECK_GRACE=$GRACE" \
               ${DRY_BUILD:+"GPU_CHECK_DRY_BUILD_S=$DRY_BUILD"}; do
  case ${setting#*=} in ''|*[!0-9]*)
    echo "gpu_check: ${setting%%=*} must be whole seconds, like 420; got ${setting#*=}" >&2
    exit 2 ;;
  esac
done
# (a grace of 0 is timeout's "never": a stage deaf to SIGINT would run on to the tool's limit;
# a dry run asked for as `true` or `yes` would run every stage for real)
[ "$((10#$GRACE))" -ge 1 ] || {
  echo "gpu_check: GPU_CHECK_GRACE must be 1 or more seconds; got $GRACE" >&2; exit 2; }
case $DRY_RUN in 0|1) ;; *)
  echo "gpu_check: GPU_CHECK_DRY_RUN must be 0 or 1; got $DRY_RUN" >&2; exit 2 ;;
esac
if ! awk -v k="$SCALE" 'BEGIN { exit !(k ~ /^([0-9]+[.]?[0-9]*|[.][0-9]+)$/ && k + 0 > 0) }'; then
  echo "gpu_check: GPU_CHECK_SCALE must be a positive number, like 0.5; got $SCALE" >&2
  exit 2
fi
DEADLINE=$((10#$DEADLINE)) GRACE=$((10#$GRACE))  # 0420 is not octal
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} GANFAST_CUDA_ARCHS=${GANFAST_CUDA_ARCHS:-90}

mkdir -p "$OUT/logs" && OUT=$(cd "$OUT" && pwd -P) || exit 2  # absolute: the cd below
# The finished stages' logs wait here, outside OUT, and go into OUT/logs.tar.gz as each stage
# ends (archive below): OUT/logs holds only the running stage's log.
STAGED=$(mktemp -d) && [ -d "$STAGED" ] && mkdir -p "$STAGED/logs" || {
  echo "gpu_check: no temporary folder for the logs" >&2; exit 2; }
[ -f "$OUT/logs.tar.gz" ] && tar -xzf "$OUT/logs.tar.gz" -C "$STAGED"  # same OUT again: keep them
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

archive() {  # OUT/logs.tar.gz: every finished stage's log, replaced whole (never half written)
  local log
  for log in "$OUT"/logs/*; do [ -e "$log" ] && mv -f "$log" "$STAGED/logs/"; done
  tar -czf "$OUT/logs/.logs.tar.gz.tmp" -C "$STAGED" logs \
    && mv -f "$OUT/logs/.logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}

WORST=0
DRY_ELAPSED=0  # a dry run's clock: each stage taken to use its whole limit and the grace
# run_stage NAME SECONDS SCALED COMMAND...: the command under `timeout` (SIGINT first, SIGKILL
# GRACE seconds later), its output in logs/NAME.log, its limit trimmed to the deadline.
run_stage() {
  local name=$1 limit=$2 scaled=$3 start status left note
  shift 3
  [ "$scaled" = yes ] && limit=$(awk -v s="$limit" -v k="$SCALE" \
    'BEGIN { t = int(s * k); print (t < 1 ? 1 : t) }')
  left=$(( DEADLINE - SECONDS - DRY_ELAPSED - GRACE - 5 ))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped, ${left}s left before the deadline" | tee -a "$OUT/summary.txt"
    return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$DRY_RUN" = 1 ]; then
    echo "== $name (limit ${limit}s): $*"
    echo "$name: dry run, limit ${limit}s" | tee -a "$OUT/summary.txt"
    if [ "$name" = build ] && [ -n "$DRY_BUILD" ]; then
      DRY_ELAPSED=$(( DRY_ELAPSED + 10#$DRY_BUILD ))
    else
      DRY_ELAPSED=$(( DRY_ELAPSED + limit + GRACE ))
    fi
    return
  fi
  start=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=INT --kill-after="$GRACE" "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  status=$?
  [ "$status" -gt "$WORST" ] && WORST=$status
  case $status in
    124) status="124 (time limit)" ;;
    137) status="137 (killed $GRACE s after the time limit)" ;;
  esac
  note=""
  [ "$name" = build ] && note=$(grep -a '^ganfast._C:' "$OUT/logs/$name.log" | tail -1)
  echo "$name: exit $status, $(( SECONDS - start )) s${note:+; $note}" | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/logs/$name.log"
  archive
}

# After the build: whether ganfast._C loads, and why not (a failed compile is a warning in the
# install, exit 0; the reason is in ganfast/_build_info.json, nvcc's message in the log above).
EXTENSION_CHECK='import ganfast; e = ganfast.info()["extension"]; print("ganfast._C:", \
"loaded (archs %s)" % e["cuda_archs"] if e["loaded"] else "not loaded: %s" % e["reason"]); \
raise SystemExit(0 if e["loaded"] else 1)'
BUILD='"$1" -m pip install -v -e . --no-build-isolation --no-deps --no-index && "$1" -c "$2"'

bench() {  # bench NAME SECONDS ARGS...: ganfast bench with its rows in OUT/NAME.jsonl
  local name=$1 limit=$2
  shift 2
  run_stage "bench-$name" "$limit" yes "$PY" -m ganfast bench "$@" --out "$OUT/$name.jsonl"
}

for stage in "${STAGES[@]}"; do
  case $stage in
    # --no-index: the machine has no network (and pip then skips its version check online);
    # -v: the compile's output (nvcc's errors) in the log, which pip hides from a build that
    # setup.py lets pass without the extension.
    build) run_stage build 240 no bash -c "$BUILD" _ "$PY" "$EXTENSION_CHECK" ;;
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
# (should the archive fail, the logs go back to OUT/logs, which comes back: not to be lost in
# a temporary folder of the device machine)
if archive; then rm -rf "$STAGED"; else cp -r "$STAGED/logs/." "$OUT/logs/"; fi
rmdir "$OUT/logs" 2> /dev/null
[ -n "${PEERS:-}" ] && rm -rf "$PEERS"  # the peers installed for this run
echo "== files in $OUT:"; ls -la "$OUT"
exit "$WORST"
