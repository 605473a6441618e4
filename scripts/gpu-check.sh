#!/usr/bin/env bash
# One prepared pass over the GPU paths, for a lent GPU machine with a short time budget:
# the gpu-marked tests and one default run per workload (fp32 and bf16), each step capped so the
# whole script ends by its deadline. Outputs go to OUT_DIR (default results/gpu-check): log.txt,
# runs/<workload>-<precision>/ (the run folders) and env.txt.
#
#   scripts/gpu-check.sh [--deadline-s N] [--out DIR] [STEP ...]
#
# STEP: tests | kernels | <workload>:<precision> (workload in image_classification, qa, ner,
# translation, detection; precision fp32 | bf16 | tf32), or <workload>:<precision>:<extra override>,
# or overhead:<workload>:<precision>[:<extra override>] (python -m harness.overhead on the GPU: the
# harness's step against a plain loop with the same settings; JSON in OUT_DIR/overhead-*.json).
# Several extra overrides are separated by commas. A run step's folder is
# runs/<workload>-<precision>[-<the last extra override's value>].
# No STEP: tests, then every workload in fp32, then every workload in bf16.
# Data: COMPUTELIMITS_SHARED_DATA (conll2003, tatoeba-eng-fra) and COMPUTELIMITS_FASHION_MNIST,
# as for the tests.
set -u
cd "$(dirname "$0")/.."
DEADLINE_S=540
OUT_DIR=results/gpu-check
PY=${PYTHON:-python3}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --deadline-s) DEADLINE_S=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    *) break ;;
  esac
done
WORKLOADS="image_classification qa ner translation detection"
if [[ $# -eq 0 ]]; then
  set -- tests
  for w in $WORKLOADS; do set -- "$@" "$w:fp32"; done
  for w in $WORKLOADS; do set -- "$@" "$w:bf16"; done
fi
mkdir -p "$OUT_DIR/runs"
LOG="$OUT_DIR/log.txt"
START=$(date +%s)
FASHION=${COMPUTELIMITS_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}

say() { echo "[gpu-check +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }

# step_cap NAME: the most seconds this step may take (the rest of the deadline beyond that is
# left to later steps; detection also generates its scenes on the first run).
step_cap() {
  case "$1" in
    tests) echo 150 ;; kernels) echo 120 ;;
    overhead:*compile*) echo 150 ;; overhead:*) echo 90 ;;
    image_classification*) echo 60 ;; qa*) echo 75 ;; ner*) echo 110 ;;
    translation*) echo 140 ;; detection*) echo 200 ;; *) echo 120 ;;
  esac
}

{
  echo "date: $(date -u +%FT%TZ)"; echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" 2>&1
  nproc
} > "$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt" | tee -a "$LOG"

for step in "$@"; do
  remaining=$(left)
  cap=$(step_cap "$step")
  (( cap > remaining )) && cap=$remaining
  if (( cap < 15 )); then say "SKIP $step: ${remaining}s left before the deadline"; continue; fi
  say "START $step (cap ${cap}s)"
  t0=$(date +%s)
  case "$step" in
    tests)
      timeout -k 5 "$cap" $PY -m pytest -q -m gpu -p no:cacheprovider --timeout 120 \
        tests/test_harness_run.py tests/test_kernels_bench.py tests/test_kernels_ncu.py tests/test_bench_kernels.py \
        tests/test_data.py tests/test_compile.py \
        >>"$LOG" 2>&1
      rc=$? ;;
    kernels)
      timeout -k 5 "$cap" $PY -m kernels device=cuda out_dir="$OUT_DIR/hardware" >>"$LOG" 2>&1
      rc=$? ;;
    overhead:*)
      IFS=: read -r _ wl prec extra <<<"$step"
      tag="$wl-$prec${extra:+-${extra##*=}}"
      over=(workload="$wl" device="${DEVICE:-cuda}" trainer.precision="$prec")
      [[ $wl == image_classification ]] && over+=(data.root="$FASHION")
      [[ -n "${extra:-}" ]] && IFS=, read -r -a more <<<"$extra" && over+=("${more[@]}")
      COMPUTELIMITS_FASHION_MNIST=$FASHION timeout -k 5 "$cap" $PY -m harness.overhead --workloads "$wl" \
        --json "$OUT_DIR/overhead-$tag.json" -- "${over[@]}" >>"$LOG" 2>&1
      rc=$? ;;
    *)
      IFS=: read -r wl prec extra <<<"$step"
      tag="$wl-$prec${extra:+-${extra##*=}}"
      over=(workload="$wl" device="${DEVICE:-cuda}" trainer.precision="$prec" trainer.progress=false
            hydra.run.dir="$OUT_DIR/runs/$tag")
      case "$wl" in
        image_classification) over+=(data.root="$FASHION") ;;
        detection) over+=(data.workers="$(nproc)") ;;
      esac
      [[ -n "${extra:-}" ]] && IFS=, read -r -a more <<<"$extra" && over+=("${more[@]}")
      COMPUTELIMITS_FASHION_MNIST=$FASHION timeout -k 5 -s INT "$cap" $PY -m harness "${over[@]}" >>"$LOG" 2>&1
      rc=$?
      res="$OUT_DIR/runs/$tag/result.json"
      if [[ -f $res ]]; then
        $PY - "$res" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
r = json.load(open(sys.argv[1]))
keys = ["status", "device_name", "precision", "metric_name", "metric_value", "train_time_s", "wall_time_s",
        "startup_time_s", "startup_phases_s", "data_time_s", "eval_time_s", "eval_samples_per_s", "train_samples",
        "train_flops", "achieved_flops_per_s", "mfu_theoretical", "energy_gpu_j", "energy_gpu_method", "failure_reason"]
print("   ", {k: r.get(k) for k in keys})
EOF
      fi ;;
  esac
  say "END $step rc=$rc in $(( $(date +%s) - t0 ))s"
done
say "done"
