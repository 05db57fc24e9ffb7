#!/usr/bin/env bash
# One side-by-side session of the strong preset (docs/benchmarks.md, "The strong preset"):
# ROUNDS rounds of `uic bench loader` with --preset paper and --preset strong on the q90
# record file, then the torchvision DataLoader with the same strong augmentations on the
# same images as files (decode_jpeg on uint8 tensors, and PIL), each printing one JSON line.
# Run it on an otherwise idle machine.
#
# usage: benches/peers/strong_session.sh UIC Q90.uicr Q90_DIR [ROUNDS]
#   UIC: the release binary; Q90.uicr: `uic convert DIR --max-side 512 --quality 90`;
#   Q90_DIR: the same images as files, from `python benches/peers/reencode.py DIR Q90_DIR`.
#   Needs a Python with torch 2.11.0 and torchvision 0.26 on PATH.
set -euo pipefail
uic=$1 q90=$2 images=$3 rounds=${4:-3}
here=$(dirname "${BASH_SOURCE[0]}")
for r in $(seq 1 "$rounds"); do
  echo "round $r"
  echo "ours paper: $("$uic" bench loader "$q90" --threads 2 --epochs 5 --preset paper --json)"
  echo "ours strong: $("$uic" bench loader "$q90" --threads 2 --epochs 5 --preset strong --json)"
  python "$here/dataloader.py" "$images" --decoder decode_jpeg --preset strong --workers 2 | tail -1
  python "$here/dataloader.py" "$images" --decoder pil --preset strong --workers 2 | tail -1
done
