#!/usr/bin/env bash
# The GPU build's extra libraries, called by `scripts/setup.sh --cuda/--nvjpeg` after the CPU
# libtorch is in place (it reuses that download). Arguments: want_cuda want_nvjpeg
# [want_nccl] (0/1).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
want_cuda=$1
want_nvjpeg=$2
want_nccl=${3:-0}
torch_version=2.11.0
nvjpeg_version=13.0.1.86   # the nvjpeg of the CUDA 13.0 toolkit torch 2.11.0 pins
wheels="$root/third_party/wheels"
cpu="$root/third_party/libtorch"

say() { printf 'setup-gpu: %s\n' "$*" >&2; }

pip_get() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.11 -d "$wheels" "$1"
}

# Extracts members of wheel $1 whose basename is in the following arguments into folder $2.
extract() {
  python3 - "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, out, *names = sys.argv[1:]
os.makedirs(out, exist_ok=True)
found = set()
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if base in names and not info.is_dir():
            with z.open(info) as src, open(os.path.join(out, base), "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            found.add(base)
missing = set(names) - found
if missing:
    sys.exit(f"setup-gpu: {sorted(missing)} not in {wheel}")
PY
}

if [ "$want_cuda" = 1 ]; then
  dest="$root/third_party/libtorch-cuda"
  stamp="torch-$torch_version cuda"
  if [ -f "$dest/.uic-stamp" ] && [ "$(cat "$dest/.uic-stamp")" = "$stamp" ]; then
    say "CUDA libtorch already in $dest"
  else
    [ -d "$cpu/include" ] || { say "run scripts/setup.sh first (no $cpu)"; exit 1; }
    wheel=$(ls "$wheels"/torch-$torch_version-*.whl 2>/dev/null | head -1)
    [ -n "$wheel" ] || { pip_get "torch==$torch_version"; wheel=$(ls "$wheels"/torch-$torch_version-*.whl | head -1); }
    say "assembling a CUDA-linkable libtorch in $dest (libtorch_cuda.so is 435 MB)"
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial/lib"
    extract "$wheel" "$dest.partial/lib" libtorch.so libtorch_cuda.so libc10_cuda.so
    for f in libtorch_cpu.so libc10.so libgomp.so.1 libcudart.so.13 libcupti.so.13; do
      ln -s "$cpu/lib/$f" "$dest.partial/lib/$f"
    done
    ln -s "$cpu/include" "$dest.partial/include"
    printf '%s' "$stamp" > "$dest.partial/.uic-stamp"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
  fi
fi

if [ "$want_nccl" = 1 ]; then
  # The CUDA and NCCL headers, from an installed torch 2.11.0 with its CUDA wheels, listed
  # beside the CUDA libtorch for c10d/build.rs.
  site=${UIC_TORCH_SITE:-}
  find_site='import os, torch; assert torch.__version__.startswith("2.11"); print(os.path.dirname(os.path.dirname(torch.__file__)))'
  for py in python3 "$root/target/pyvenv/bin/python"; do
    [ -n "$site" ] && break
    site=$("$py" -c "$find_site" 2>/dev/null) || site=""
  done
  if [ -z "$site" ]; then
    say "--nccl needs an installed torch 2.11.0 with its CUDA wheels (pip install torch==2.11.0, or set UIC_TORCH_SITE to its site-packages)"
    exit 1
  fi
  "$root/scripts/cuda-headers.sh" "$site" > "$root/third_party/libtorch-cuda/uic-nccl-include"
  say "NCCL headers from $site, listed in third_party/libtorch-cuda/uic-nccl-include"
fi

if [ "$want_nvjpeg" = 1 ]; then
  dest="$root/third_party/nvjpeg"
  stamp="nvjpeg-$nvjpeg_version"
  if [ -f "$dest/.uic-stamp" ] && [ "$(cat "$dest/.uic-stamp")" = "$stamp" ]; then
    say "nvJPEG already in $dest"
  else
    ls "$wheels"/nvidia_nvjpeg-$nvjpeg_version-*.whl >/dev/null 2>&1 || pip_get "nvidia-nvjpeg==$nvjpeg_version"
    wheel=$(ls "$wheels"/nvidia_nvjpeg-$nvjpeg_version-*.whl | head -1)
    rm -rf "$dest.partial"
    extract "$wheel" "$dest.partial/lib" libnvjpeg.so.13
    extract "$wheel" "$dest.partial/include" nvjpeg.h
    # The linker looks for the unversioned name.
    ln -s libnvjpeg.so.13 "$dest.partial/lib/libnvjpeg.so"
    printf '%s' "$stamp" > "$dest.partial/.uic-stamp"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    say "nvJPEG $nvjpeg_version in $dest"
  fi
fi
