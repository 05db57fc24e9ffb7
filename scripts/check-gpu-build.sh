#!/usr/bin/env bash
# The GPU build, checked on a machine without a GPU (part of the README's test command):
#   1. `cargo check` of the workspace with the features cuda, nvjpeg and nccl, so that code
#      behind them cannot break unseen (it is compiled, not linked: no CUDA libtorch needed);
#   2. the shim's NCCL process group compiled, linked and run without cargo
#      (c10d/csrc/nccl-probe): csrc/shim.cpp with UIC_C10D_NCCL against an installed torch
#      2.11.0's CUDA headers (scripts/cuda-headers.sh), linked to its libtorch_cuda, one rank
#      on CUDA device 0. Without a GPU it checks that libtorch's refusal comes back as one
#      message; on a GPU, that the group sums.
# Usage: scripts/check-gpu-build.sh [SITE-PACKAGES]; without it, the tests' venv
# (target/pyvenv). Where that has no torch, the NCCL parts say they are skipped and step 1
# checks cuda and nvjpeg only.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf 'check-gpu-build: %s\n' "$*" >&2; }

site=${1:-}
if [ -z "$site" ]; then
  py="$root/target/pyvenv/bin/python"
  [ -x "$py" ] && site=$("$py" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null) || site=""
fi
incs=""
if [ -z "$site" ]; then
  say "no torch in target/pyvenv (scripts/test-venv.sh installs it where the disk has room): the NCCL parts are skipped"
elif ! incs=$("$root/scripts/cuda-headers.sh" "$site"); then
  say "the CUDA headers could not be assembled (above): the NCCL parts are skipped"
  incs=""
fi

features=uic-tools/cuda,uic-tools/nvjpeg
[ -n "$incs" ] && features="$features,uic-tools/nccl"
say "cargo check --features $features"
UIC_NCCL_INCLUDE=$(printf '%s' "$incs" | paste -sd:) \
  cargo check -q --workspace --all-targets --features "$features"
[ -n "$incs" ] || exit 0

out="$root/target/nccl-probe"
mkdir -p "$out"
flags=(-std=c++17 -O1 -w -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_GLOO -DUSE_C10D_NCCL -DUIC_C10D_NCCL
  -I"$root/c10d/csrc/gloo-stand-in" -I"$site/torch/include"
  -I"$site/torch/include/torch/csrc/api/include")
while IFS= read -r d; do flags+=(-I"$d"); done <<< "$incs"
lib="$site/torch/lib"
say "the shim's NCCL group, compiled against $site and run"
c++ "${flags[@]}" -c "$root/c10d/csrc/shim.cpp" -o "$out/shim.o"
c++ "${flags[@]}" -c "$root/c10d/csrc/nccl-probe/probe.cpp" -o "$out/probe.o"
c++ -o "$out/probe" "$out/probe.o" "$out/shim.o" -L"$lib" -Wl,--no-as-needed \
  -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,-rpath,"$lib"
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 120 "$out/probe"
