#!/usr/bin/env bash
# The GPU check, in one command (issue 25): environment, the tests marked cuda, step times of
# ce / mwnet / MFM variants (fp32, bf16 + channels_last, the plain step compiled), seconds per
# epoch of CIFAR-10-LT-sized random data on ResNet-32 with the projected 200-epoch time, and
# the throughput of 1, 4 and 8 runs at once on one GPU. Prints one Markdown block (and writes
# it to --out FILE); each part has its own time limit, so the whole stays under 8 minutes.
#
#   bench/gpu.sh                          # on a CUDA machine
#   bench/gpu.sh --out gpu-report.md
#   bench/gpu.sh --device cpu --smoke     # everything tiny, on the CPU, in seconds (the tests)
set -uo pipefail

DEVICE=cuda
SMOKE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/gpu.sh: unknown option $1 (--device cuda|cpu, --smoke, --out FILE)" >&2
       exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "bench/gpu.sh: --device cuda|cpu (got $DEVICE)" >&2
  exit 2 ;; esac

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [ "$SMOKE" = 1 ]; then
  STEP=(--model resnet8 --size 8 --batch 16 --iters 2 --warmup 1 --only "mwnet,penultimate exact")
  EPOCH=(--smoke)
  CONCURRENT=1,2
  TESTS=(tests/engine)
  T_TESTS=120; T_STEP=120; T_COMPILE=120; T_EPOCH=120; T_CONC=120
else
  STEP=(--model resnet32 --size 32 --channels 3 --batch 128 --iters 20 --warmup 5)
  EPOCH=(--epochs 2)
  CONCURRENT=1,4,8
  TESTS=(tests)
  # per-part limits that sum to 450 s: the whole stays under 8 minutes even if parts stall
  T_TESTS=50; T_STEP=55; T_COMPILE=80; T_EPOCH=55; T_CONC=100
fi

section() { printf '\n#### %s\n\n' "$1"; }
# run a part with a time limit; its failure is reported in the block, never fatal
part() {
  local limit="$1"; shift
  local tmp; tmp="$(mktemp)"
  timeout --kill-after=10 "$limit" "$@" >"$tmp" 2>&1
  local rc=$?
  grep -v '^W[0-9]\{4\} \|^  warnings.warn\|UserWarning' "$tmp"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "(stopped at its ${limit} s limit)"
  elif [ $rc -ne 0 ]; then echo "(exit code $rc)"; fi
  rm -f "$tmp"
}

report() {
  local started; started=$(date +%s)
  echo "<!-- bench/gpu.sh: begin -->"
  echo "### bench/gpu.sh --device $DEVICE$([ "$SMOKE" = 1 ] && echo ' --smoke')," \
       "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname)"
  section "Environment"
  echo '```'
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap \
      --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  else
    echo "gpu: no nvidia-smi on this machine"
  fi
  "$PY" - <<'EOF'
import os, platform, torch
print(f"torch: {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'})")
print(f"cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
print(f"python: {platform.python_version()}, CPUs: {len(os.sched_getaffinity(0))}, "
      f"load: {' '.join(open('/proc/loadavg').read().split()[:3])}")
EOF
  echo '```'

  section "Tests marked cuda"
  echo '```'
  part "$T_TESTS" env OMP_NUM_THREADS=1 "$PY" -m pytest "${TESTS[@]}" -m cuda -q \
    -p no:cacheprovider -rs 2>&1 | tail -n 6
  echo '```'

  section "Step time, fp32 (bench/step_time.py)"
  part "$T_STEP" "$PY" bench/step_time.py --device "$DEVICE" "${STEP[@]}"
  section "Step time, bf16 + channels_last"
  part "$T_STEP" "$PY" bench/step_time.py --device "$DEVICE" "${STEP[@]}" --amp bf16 \
    --channels-last
  section "Step time, the plain step compiled"
  if [ "$SMOKE" = 1 ] && [ "$DEVICE" = cpu ]; then
    echo "skipped in --smoke on the CPU: inductor's C++ build takes 20-90 s here" \
         "(tests/engine/test_step_settings.py tests it, marked slow)"
  else
    part "$T_COMPILE" "$PY" bench/step_time.py --device "$DEVICE" "${STEP[@]}" --compile plain
  fi

  section "Seconds per epoch, CIFAR-10-LT-sized random data (bench/epoch_time.py)"
  part "$T_EPOCH" "$PY" bench/epoch_time.py --device "$DEVICE" "${EPOCH[@]}"
  echo
  part "$T_EPOCH" "$PY" bench/epoch_time.py --device "$DEVICE" "${EPOCH[@]}" --amp bf16 \
    --channels-last

  section "Runs at once on one $([ "$DEVICE" = cuda ] && echo GPU || echo CPU)"
  part "$T_CONC" "$PY" bench/epoch_time.py --device "$DEVICE" "${EPOCH[@]}" \
    --concurrent "$CONCURRENT"

  echo
  echo "bench/gpu.sh took $(( $(date +%s) - started )) s"
  echo "<!-- bench/gpu.sh: end -->"
}

if [ -n "$OUT" ]; then
  report | tee "$OUT"
else
  report
fi
