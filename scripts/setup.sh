#!/usr/bin/env bash
# Installs what the build needs, idempotently, on a Debian machine:
#   - apt packages cmake and nasm (turbojpeg builds its bundled libjpeg-turbo 3.1 with them);
#   - a lean CPU libtorch 2.11.0 in third_party/libtorch, extracted from the PyPI wheels;
#   - python3 with pip and venv (the Python package is tested in a venv).
# A second run does nothing but print what it found. Set LIBTORCH (a libtorch 2.11 folder)
# or LIBTORCH_USE_PYTORCH=1 (a PyTorch 2.11 install) to skip the libtorch download.
#
# Options for the GPU build (scripts/gpu-check uses them; neither is needed otherwise):
#   --cuda    also assemble third_party/libtorch-cuda: the CPU libtorch plus the wheel's real
#             libtorch.so, libtorch_cuda.so and libc10_cuda.so (about 440 MB more on disk), to
#             link a binary with `--features cuda`. It runs only where CUDA is installed.
#   --nvjpeg  also fetch libnvjpeg.so.13 and nvjpeg.h from the nvidia-nvjpeg wheel into
#             third_party/nvjpeg, to link `--features nvjpeg`.
#   --nccl    (with --cuda) also gather the CUDA and NCCL headers the shim's NCCL process
#             group compiles against (scripts/cuda-headers.sh), from an installed torch 2.11.0
#             (the python3 on PATH, else the tests' venv target/pyvenv, else UIC_TORCH_SITE),
#             to build `--features nccl`.
set -euo pipefail

want_cuda=0
want_nvjpeg=0
want_nccl=0
for arg in "$@"; do
  case "$arg" in
    --cuda) want_cuda=1 ;;
    --nvjpeg) want_nvjpeg=1 ;;
    --nccl) want_cuda=1; want_nccl=1 ;;
    *) printf 'setup: unknown option %s (expected --cuda, --nvjpeg or --nccl)\n' "$arg" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
torch_version=2.11.0
cudart_version=13.0.96   # what torch 2.11.0's cuda-toolkit==13.0.2 pins
cupti_version=13.0.85
dest="$root/third_party/libtorch"
wheels="$root/third_party/wheels"
stamp="torch-$torch_version cudart-$cudart_version cupti-$cupti_version"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install Rust 1.85 or newer (rustup.rs), then run this again"
  exit 1
fi

apt_missing=()
command -v cmake >/dev/null 2>&1 || apt_missing+=(cmake)
command -v nasm >/dev/null 2>&1 || apt_missing+=(nasm)
command -v make >/dev/null 2>&1 || apt_missing+=(make)
command -v cc >/dev/null 2>&1 || apt_missing+=(gcc)
command -v c++ >/dev/null 2>&1 || apt_missing+=(g++)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_missing+=(python3-pip)
fi
# The Python package's tests run in a venv (scripts/test-python.sh).
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  apt_missing+=(python3-venv)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing ${apt_missing[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

gpu_extras() {
  [ "$want_cuda$want_nvjpeg" = "00" ] && return 0
  exec "$root/scripts/setup-gpu.sh" "$want_cuda" "$want_nvjpeg" "$want_nccl"
}

if [ -n "${LIBTORCH:-}" ]; then
  say "using LIBTORCH=$LIBTORCH (must be libtorch $torch_version)"
  gpu_extras
  exit 0
fi
if [ -n "${LIBTORCH_USE_PYTORCH:-}" ]; then
  say "using the PyTorch install that python3 imports (must be torch $torch_version)"
  gpu_extras
  exit 0
fi
if [ -f "$dest/.uic-stamp" ] && [ "$(cat "$dest/.uic-stamp")" = "$stamp" ]; then
  say "libtorch $torch_version already in $dest"
  gpu_extras
  exit 0
fi

say "fetching the PyPI wheels for torch $torch_version (about 540 MB, once)"
mkdir -p "$wheels"
pip_get() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.11 -d "$wheels" "$1"
}
ls "$wheels"/torch-$torch_version-*.whl >/dev/null 2>&1 || pip_get "torch==$torch_version"
ls "$wheels"/nvidia_cuda_runtime-$cudart_version-*.whl >/dev/null 2>&1 || pip_get "nvidia-cuda-runtime==$cudart_version"
ls "$wheels"/nvidia_cuda_cupti-$cupti_version-*.whl >/dev/null 2>&1 || pip_get "nvidia-cuda-cupti==$cupti_version"

say "extracting a CPU-only libtorch into $dest"
tmp="$dest.partial"
rm -rf "$tmp"
mkdir -p "$tmp/lib"
python3 - "$wheels" "$tmp" "$torch_version" "$cudart_version" "$cupti_version" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, out, tv, rv, cv = sys.argv[1:]
def extract(wheel, keep, rename):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.is_dir() or not keep(info.filename):
                continue
            target = os.path.join(out, rename(info.filename))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
def one(pattern):
    found = glob.glob(os.path.join(wheels, pattern))
    if len(found) != 1:
        sys.exit(f"setup: expected one wheel matching {pattern}, found {found}")
    return found[0]
libs = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1"}
extract(one(f"torch-{tv}-*.whl"),
        lambda n: n.startswith("torch/include/") or (n.startswith("torch/lib/") and os.path.basename(n) in libs),
        lambda n: n[len("torch/"):])
for pattern, lib in [(f"nvidia_cuda_runtime-{rv}-*.whl", "libcudart.so.13"),
                     (f"nvidia_cuda_cupti-{cv}-*.whl", "libcupti.so.13")]:
    extract(one(pattern), lambda n, lib=lib: os.path.basename(n) == lib,
            lambda n: os.path.join("lib", os.path.basename(n)))
    if not os.path.exists(os.path.join(out, "lib", lib)):
        sys.exit(f"setup: {lib} not found in {pattern}")
PY
# tch always links -ltorch; the CPU build needs nothing from it, so an empty stub stands in.
cc -shared -o "$tmp/lib/libtorch.so" -x c /dev/null
printf '%s' "$stamp" > "$tmp/.uic-stamp"
rm -rf "$dest"
mv "$tmp" "$dest"
du -sh "$dest" | sed 's/^/setup: libtorch size /' >&2
gpu_extras
