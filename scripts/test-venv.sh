#!/usr/bin/env bash
# The tests' venv, target/pyvenv, made before the Rust tests run:
#   - numpy and pytest, for the Python package's tests (scripts/test-python.sh);
#   - moto's S3-compatible server (`moto[server]`), which the object-storage tests start on
#     loopback (loader/tests/remote.rs, tools/tests/remote.rs);
#   - torch 2.11.0 from PyPI (about 4.6 GB with its CUDA wheels, which run on the CPU too),
#     for torchrun (the restart and elastic-membership tests in tools/tests/preempt.rs) and
#     the Python torch example's test.
# Whatever pip cannot install, the tests that need it say they are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/pyvenv
say() { printf 'test-venv: %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  say "making the venv $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check numpy pytest 'moto[server]>=5,<6' \
  || say "pip could not install numpy, pytest and moto[server]: the tests that need them will say they are skipped"
"$venv/bin/python" -c "import torch" 2>/dev/null \
  || "$venv/bin/python" -m pip install -q --disable-pip-version-check torch==2.11.0 \
  || say "pip could not install torch 2.11.0: the torchrun and torch-example tests will say they are skipped"
