#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), one after the other, and
# prints per target: executions, coverage (cov/ft from libFuzzer's final stats) and
# crashes. Not part of CI; needs the nightly toolchain and `cargo install cargo-fuzz`.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target's working corpus is fuzz/corpus/<target> (git-ignored), started from the
# committed seeds in fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target>; full logs
# in fuzz/logs/<target>.log. Runs under `nice -n 10` with a 1 GiB RSS limit, so an input
# that makes the parsers allocate more than that counts as a crash.
set -euo pipefail

secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(record_open jpeg_crop labels tar_input augment)
fi

cargo +nightly fuzz build >&2
mkdir -p logs
printf '%-12s %6s %12s %8s %8s %8s\n' target secs execs cov ft crashes
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dict=()
    [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    before=$(find "artifacts/$t" -type f | wc -l)
    # -fork is not used: one process, so libFuzzer's final stats line is the whole run.
    nice -n 10 "target/x86_64-unknown-linux-gnu/release/$t" \
        "corpus/$t" "seeds/$t" "${dict[@]}" \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || true
    after=$(find "artifacts/$t" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    crashes=$((after - before))
    printf '%-12s %6s %12s %8s %8s %8s\n' "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
    if [ "$crashes" -ne 0 ]; then
        status=1
        ls -t "artifacts/$t" | head -n "$crashes" | sed "s|^|    fuzz/artifacts/$t/|"
    fi
done
exit $status
