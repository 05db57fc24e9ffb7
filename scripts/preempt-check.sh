#!/usr/bin/env bash
# The cluster issue's bar on real data: a run sent SIGTERM part-way through an epoch stops
# with status 75 after a checkpoint there; resumed, its final weights and metrics (timing
# aside) equal an uninterrupted run's. Usage: scripts/preempt-check.sh RECORD_FILE [EPOCHS]
# (the reference config of docs/results.md: imagenette-val at 36 px).
set -euo pipefail
data=$1
epochs=${2:-4}
uic=${UIC:-target/release/uic}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train --data "$data" --arch alexnet-small --width 0.5 --input-size 32 --min-scale 0.2
        --preset strong --no-sobel --k 30 --batch-size 128 --epochs "$epochs" --seed 0 --quiet)

"$uic" "${common[@]}" --out "$work/whole"
"$uic" "${common[@]}" --out "$work/cut" &
pid=$!
until [ -s "$work/cut/metrics.jsonl" ]; do sleep 0.05; done
sleep 0.7   # part-way through epoch 2
kill -TERM "$pid"
set +e; wait "$pid"; status=$?; set -e
echo "status after SIGTERM: $status"
python3 - "$work/cut/checkpoint/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("checkpoint: epoch", s["epoch"], "partial", s.get("partial", {}).get("batches"), "batches")
PY
"$uic" "${common[@]}" --out "$work/cut" --resume
for f in model optimizer labels; do
  cmp "$work/whole/checkpoint/$f.safetensors" "$work/cut/checkpoint/$f.safetensors"
  echo "$f.safetensors: identical"
done
python3 - "$work/whole/metrics.jsonl" "$work/cut/metrics.jsonl" <<'PY'
import json, sys
def load(p):
    out = []
    for l in open(p):
        v = json.loads(l)
        for k in ("images_per_s", "data_wait", "seconds", "labeling_seconds"):
            v.pop(k, None)
        out.append(v)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
for x, y in zip(a, b):
    for k in x:
        if x[k] != y.get(k):
            print(f"epoch {x['epoch']}: {k} {x[k]} vs {y.get(k)}")
assert a == b, "metrics differ"
print(f"metrics.jsonl: {len(a)} epochs identical (timing aside)")
PY
