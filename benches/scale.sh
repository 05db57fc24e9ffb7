#!/usr/bin/env bash
# The scale bench (docs/benchmarks.md, "Scale"): every stage on N synthetic tiny JPEGs of
# 1,000 classes, with its wall time and peak memory.
#
# usage: benches/scale.sh N [DIR]
#   N: images; DIR: working folder (default: a new one under ${TMPDIR:-/tmp}), kept after
#   the run. Environment: UIC (the binary, default target/release/uic), WIDTH (channel
#   multiplier of alexnet-small for the train stage, default 0.125: the per-image state the
#   bench measures does not depend on it), K (pseudo-classes, default 10000), THREADS
#   (default 2), STAGES (default "synth convert inspect verify loader train eval"; the
#   record file from synth is reused if it exists), EVAL_WAIT=FILE (run eval only once FILE
#   exists; default /tmp/eval-helper-done), PROBE_EPOCHS (epochs of the linear probes of
#   `uic eval linear`, default 1: the bench measures memory, not accuracy).
#
# Each stage runs under /usr/bin/time -v (wall time, ru_maxrss: peak RSS including the
# mapped record file's pages) while a sampler reads the process's RssAnon from
# /proc/PID/status every 20 ms: the peak of anonymous memory, which excludes the page cache
# of the mapped file (the budgets of issue 16 are beyond that cache). The sampler can miss
# a peak shorter than its period. Output: one row per stage,
#   stage  seconds  maxrss_MiB  anon_MiB  anon_B_per_image
set -euo pipefail
n=${1:?usage: benches/scale.sh N [DIR]}
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/uic-scale-$n.XXXXXX")}
mkdir -p "$dir"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
uic=${UIC:-$root/target/release/uic}
width=${WIDTH:-0.125} k=${K:-10000} threads=${THREADS:-2}
export LD_LIBRARY_PATH=$root/third_party/libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
log=$dir/scale.log
: >"$log"

# measure STAGE CMD...: runs CMD, prints its row, and keeps its output in $dir/STAGE.out.
measure() {
  local stage=$1
  shift
  local out=$dir/$stage.out tv=$dir/$stage.time
  /usr/bin/time -v -o "$tv" "$@" >"$out" 2>&1 &
  local tpid=$! peak=0 child="" v
  while kill -0 "$tpid" 2>/dev/null; do
    [ -n "$child" ] || child=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null | awk '{print $1}')
    if [ -n "$child" ]; then
      v=$(awk '/^RssAnon:/ {print $2}' "/proc/$child/status" 2>/dev/null || true)
      [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
    fi
    sleep 0.02
  done
  local rc=0
  wait "$tpid" || rc=$?
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$tv")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
  printf '%-14s %9.2f %11.1f %9.1f %17.1f%s\n' "$stage" "$secs" "$(echo "$rss/1024" | bc -l)" \
    "$(echo "$peak/1024" | bc -l)" "$(echo "$peak*1024/$n" | bc -l)" \
    "$([ "$rc" = 0 ] || echo "  (exit $rc, see $out)")" | tee -a "$log"
}

echo "# N=$n dir=$dir uic=$uic width=$width k=$k threads=$threads $(date -u +%FT%TZ)" | tee -a "$log"
printf '%-14s %9s %11s %9s %17s\n' stage seconds maxrss_MiB anon_MiB anon_B_per_image | tee -a "$log"
stages=" ${STAGES:-synth convert inspect verify loader train eval} "
has() { [[ $stages == *" $1 "* ]]; }
rec=$dir/scale.uicr
if has synth || [ ! -e "$rec" ]; then
  measure synth "$uic" synth "$rec" --images "$n" --classes 1000
fi
if has convert; then
  rm -rf "$dir/images"
  measure synth-folder "$uic" synth "$dir/images" --images "$n" --classes 1000 --folder
  measure convert "$uic" convert "$dir/images" -o "$dir/conv.uicr" --threads "$threads"
  rm -rf "$dir/images"
fi
has inspect && measure inspect "$uic" inspect "$rec" --json
has verify && measure verify "$uic" verify "$rec" --json
has loader && measure loader "$uic" bench loader "$rec" --size 32 --epochs 1 --threads "$threads" --json
if has train; then
  rm -rf "$dir/run"
  measure train "$uic" train --data "$rec" --out "$dir/run" --arch alexnet-small --width "$width" \
    --input-size 32 --k "$k" --epochs 1 --threads "$threads" --torch-threads "$threads" --quiet
fi
if has eval; then
  wait_for=${EVAL_WAIT:-/tmp/eval-helper-done}
  if [ -e "$wait_for" ]; then
    for what in knn linear nmi; do
      measure "eval-$what" "$uic" eval "$what" --checkpoint "$dir/run" --data "$rec" \
        --threads "$threads" --probe-epochs "${PROBE_EPOCHS:-1}" --json
    done
  else
    echo "eval: pending ($wait_for does not exist yet)" | tee -a "$log"
  fi
fi
