#!/usr/bin/env bash
# Alternating rounds of one training step, ours against PyTorch eager (docs/benchmarks.md,
# "Trainer step time"): `uic bench step` with and without channels-last, then
# uic_step.py with and without --channels-last; medians of 100 steps, in ms.
#
# usage: benches/peers/step_session.sh UIC [ROUNDS]   (a Python with torch 2.11.0 on PATH)
set -euo pipefail
uic=$1 rounds=${2:-6}
here=$(dirname "${BASH_SOURCE[0]}")
args=(--arch alexnet-small --width 0.5 --input-size 32 --no-sobel --k 30 --batch-size 128 --steps 100)
med() { python -c "import json,sys; print(round(json.load(sys.stdin)['step_ms_median'], 1))"; }
for r in $(seq 1 "$rounds"); do
  a=$("$uic" bench step "${args[@]}" --no-channels-last --json | med)
  b=$("$uic" bench step "${args[@]}" --json | med)
  c=$(python "$here/uic_step.py" --steps 100 | med)
  d=$(python "$here/uic_step.py" --steps 100 --channels-last | med)
  echo "round $r: uic nchw $a, uic channels-last $b, torch $c, torch channels_last $d"
done
