#!/usr/bin/env bash
# `uic bench loader` on a record file in S3 beside the same file on the local disk
# (docs/benchmarks.md, "Record files in object storage"). The server is moto's S3 server on
# loopback. Each round, alternating: the local file; the URL from a cold cache (its first
# epoch is the download's pace, the later ones read the cache); and, with RATE given, the
# URL from a cold cache with loopback throttled to RATE by a token bucket (`tc ... tbf`; it
# needs root, and throttles all loopback traffic while it runs).
# Prints one line per run: condition, first epoch img/s (remote), later epochs img/s.
#
# usage: benches/peers/remote_session.sh UIC FILE.uicr MOTO_SERVER [ROUNDS] [RATE, e.g. 400mbit]
set -euo pipefail
uic=$1 file=$2 moto=$3 rounds=${4:-3} rate=${5:-}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "$rate" ] && tc qdisc del dev lo root 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
timeout 3600 "$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
server=$!
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
curl -s -f -X PUT "http://127.0.0.1:$port/bkt" >/dev/null
curl -s -f -X PUT -H 'x-amz-acl: public-read' -H 'Content-Type: application/octet-stream' --data-binary @"$file" "http://127.0.0.1:$port/bkt/data.uicr" >/dev/null
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
bench=(bench loader --threads 2 --epochs 3 --json)
field() { python3 -c "import json,sys; j=json.loads(sys.stdin.read()); print('%.0f' % j.get('$1', float('nan')))"; }

for r in $(seq "$rounds"); do
  j=$("$uic" "${bench[@]}" "$file")
  echo "round $r local     first -     later $(field images_per_s <<<"$j")"
  rm -rf "$work/cache"
  j=$(UIC_CACHE_DIR="$work/cache" "$uic" "${bench[@]}" "s3://bkt/data.uicr")
  echo "round $r s3 cold   first $(field first_epoch_images_per_s <<<"$j") later $(field images_per_s <<<"$j")"
  if [ -n "$rate" ]; then
    rm -rf "$work/cache"
    tc qdisc add dev lo root tbf rate "$rate" burst 1mb latency 200ms
    j=$(UIC_CACHE_DIR="$work/cache" "$uic" "${bench[@]}" "s3://bkt/data.uicr")
    tc qdisc del dev lo root
    echo "round $r s3 $rate first $(field first_epoch_images_per_s <<<"$j") later $(field images_per_s <<<"$j")"
  fi
done
