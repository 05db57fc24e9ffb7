#!/usr/bin/env bash
# The tests' venv, target/pyvenv, made before the Rust tests run:
#   - numpy and pytest, for the Python package's tests (scripts/test-python.sh);
#   - moto's S3-compatible server (`moto[server]`), which the object-storage tests start on
#     loopback (loader/tests/remote.rs, tools/tests/remote.rs);
#   - torch 2.11.0 from PyPI (about 5.2 GB installed with its CUDA wheels, which run on the CPU too),
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
# torch takes about 5.2 GB installed, and its wheels about 3 GB more while pip installs them
# (not kept: --no-cache-dir). The Rust build after this needs about 6 GB. Below 14 GiB free,
# torch is left out, saying so, rather than filling the disk halfway through the tests.
need_gib=14
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  free_gib=$(( $(df -Pk "$venv" | awk 'NR == 2 { print $4 }') / 1048576 ))
  if [ "$free_gib" -lt "$need_gib" ]; then
    say "only $free_gib GiB free on the disk of $venv (torch and the build need $need_gib): torch 2.11.0 is not installed, and the torchrun and torch-example tests will say they are skipped"
  else
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir torch==2.11.0 \
      || say "pip could not install torch 2.11.0: the torchrun and torch-example tests will say they are skipped"
  fi
fi
