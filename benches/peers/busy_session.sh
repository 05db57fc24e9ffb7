#!/usr/bin/env bash
# `uic train` idle and beside a competing load (docs/benchmarks.md, "A busy machine"): the
# README's imagenette recipe for 2 epochs, each condition ROUNDS times, alternating.
#   before: OMP_WAIT_POLICY and GOMP_SPINCOUNT set empty, which libgomp rejects ("Invalid
#           value") and then keeps its default (300,000 spins, then sleep), and which `uic`
#           leaves alone (it re-executes only when both are unset): what every
#           libtorch command did before it bounded the spin;
#   after:  OMP_WAIT_POLICY and GOMP_SPINCOUNT unset, so `uic` re-executes itself with
#           GOMP_SPINCOUNT=10000 (the default now).
# The load is one busy shell loop per core, started before and stopped after each run.
# Prints one line per run: condition, load, wall seconds, and the epochs' images/s.
#
# usage: benches/peers/busy_session.sh UIC IMAGENETTE_DIR [ROUNDS] [EXTRA TRAIN FLAGS...]
set -euo pipefail
uic=$1 images=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
extra=("$@")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$uic" convert "$images" -o "$work/i36.uicr" --max-side 36 >/dev/null 2>&1
cores=$(nproc)

load_start() { for _ in $(seq "$cores"); do (while :; do :; done) & done; }
load_stop() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }

one() { # condition load
  local cond=$1 load=$2 out="$work/run" t0 t1
  rm -rf "$out"
  [ "$load" = busy ] && load_start
  t0=$(date +%s.%N)
  if [ "$cond" = before ]; then
    OMP_WAIT_POLICY= GOMP_SPINCOUNT= "$uic" train --data "$work/i36.uicr" --out "$out" --arch alexnet-small \
      --width 0.5 --input-size 32 --min-scale 0.2 --preset strong --no-sobel --k 30 \
      --batch-size 128 --epochs 2 --quiet ${extra[@]+"${extra[@]}"} 2>/dev/null
  else
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$uic" train --data "$work/i36.uicr" --out "$out" --arch alexnet-small \
      --width 0.5 --input-size 32 --min-scale 0.2 --preset strong --no-sobel --k 30 \
      --batch-size 128 --epochs 2 --quiet ${extra[@]+"${extra[@]}"} 2>/dev/null
  fi
  t1=$(date +%s.%N)
  [ "$load" = busy ] && load_stop
  local rates
  rates=$(grep -o '"images_per_s":[0-9.]*' "$out/metrics.jsonl" | cut -d: -f2 | xargs printf '%.0f ')
  printf '%s %s %.1f s, images/s: %s\n' "$cond" "$load" "$(echo "$t1 - $t0" | bc)" "$rates"
}

for r in $(seq 1 "$rounds"); do
  for load in idle busy; do
    for cond in before after; do
      one "$cond" "$load"
    done
  done
done
