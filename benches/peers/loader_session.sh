#!/usr/bin/env bash
# One side-by-side session of the loader against its peers (docs/benchmarks.md, session G):
# ROUNDS rounds of `uic bench loader` on the passthrough and the q90 record files, then the
# PIL and decode_jpeg DataLoaders and FFCV on the same 1000 JPEGs, each printing one JSON
# line. Run it on an otherwise idle machine.
#
# usage: benches/peers/loader_session.sh UIC PASS.uicr Q90.uicr IMAGE_DIR BETON [ROUNDS]
#   UIC: the release binary; the record files come from `uic convert` (see the doc);
#   BETON: FFCV's file, written by ffcv_loader.py on first use. Needs a Python with
#   torch 2.11.0, torchvision and ffcv 1.0.2 on PATH.
set -euo pipefail
uic=$1 pass=$2 q90=$3 images=$4 beton=$5 rounds=${6:-3}
here=$(dirname "${BASH_SOURCE[0]}")
for r in $(seq 1 "$rounds"); do
  echo "round $r"
  echo "ours pass: $("$uic" bench loader "$pass" --threads 2 --epochs 5 --json)"
  echo "ours q90: $("$uic" bench loader "$q90" --threads 2 --epochs 5 --json)"
  python "$here/dataloader.py" "$images" --decoder pil --workers 2 | tail -1
  python "$here/dataloader.py" "$images" --decoder decode_jpeg --workers 2 | tail -1
  python "$here/ffcv_loader.py" "$images" "$beton" --workers 2 --epochs 5 | tail -1
done
