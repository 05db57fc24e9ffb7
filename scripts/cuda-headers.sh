#!/usr/bin/env bash
# The headers the shim's NCCL process group compiles against, printed as include folders,
# one per line. Usage: scripts/cuda-headers.sh SITE, where SITE is the site-packages folder
# of an installed torch 2.11.0 with its CUDA wheels (pip install torch==2.11.0; the GPU
# machines carry it): its nvidia/cu13/include (CUDA runtime, cuBLAS, cuSPARSE, cuSOLVER) and
# nvidia/nccl/include (nccl.h, NCCL 2.28.9). Two small wheels that torch does not install are
# fetched once into third_party/wheels and unpacked into third_party/cuda-headers: the CUDA
# 13.0 toolkit's crt/ headers (nvidia-cuda-crt) and CCCL (nvidia-cuda-cccl), which
# cuda_runtime.h and cuda_fp16.h include.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
site=${1:?usage: scripts/cuda-headers.sh SITE-PACKAGES}
crt_version=13.0.88   # the CUDA 13.0 toolkit's, beside torch 2.11.0's cudart 13.0.96
cccl_version=13.0.85
wheels="$root/third_party/wheels"
dest="$root/third_party/cuda-headers"
stamp="crt-$crt_version cccl-$cccl_version"

say() { printf 'cuda-headers: %s\n' "$*" >&2; }

for need in nvidia/cu13/include/cuda_runtime_api.h nvidia/cu13/include/cublas_v2.h \
  nvidia/nccl/include/nccl.h torch/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp; do
  if [ ! -f "$site/$need" ]; then
    say "no $need under $site: install torch 2.11.0 with its CUDA wheels there (pip install torch==2.11.0)"
    exit 1
  fi
done

if [ ! -f "$dest/.uic-stamp" ] || [ "$(cat "$dest/.uic-stamp")" != "$stamp" ]; then
  mkdir -p "$wheels"
  for w in "nvidia-cuda-crt==$crt_version" "nvidia-cuda-cccl==$cccl_version"; do
    name=$(printf '%s' "${w%%==*}" | tr - _)
    ls "$wheels"/"$name"-"${w##*==}"-*.whl >/dev/null 2>&1 && continue
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 -d "$wheels" "$w"
  done
  rm -rf "$dest.partial"
  mkdir -p "$dest.partial"
  python3 - "$wheels" "$dest.partial" "$crt_version" "$cccl_version" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, out, crt, cccl = sys.argv[1:]
for pattern in (f"nvidia_cuda_crt-{crt}-*.whl", f"nvidia_cuda_cccl-{cccl}-*.whl"):
    found = glob.glob(os.path.join(wheels, pattern))
    if len(found) != 1:
        sys.exit(f"cuda-headers: expected one wheel matching {pattern}, found {found}")
    with zipfile.ZipFile(found[0]) as z:
        for info in z.infolist():
            prefix = "nvidia/cu13/include/"
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            target = os.path.join(out, "include", info.filename[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
  printf '%s' "$stamp" > "$dest.partial/.uic-stamp"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
fi

printf '%s\n' "$site/nvidia/cu13/include" "$dest/include" "$site/nvidia/nccl/include"
