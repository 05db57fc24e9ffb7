#!/usr/bin/env bash
# The Python package's tests (python/tests), run by scripts/test.sh after the Rust tests:
#   - a venv in target/pyvenv with numpy and pytest from PyPI;
#   - torch, only when pip can take it offline from third_party/wheels with everything it
#     needs (otherwise the example's test is skipped, saying so);
#   - the package built and installed by `pip install ./python` (maturin, from PyPI), in the
#     dev profile so that it reuses the Rust build the tests just made (UIC_PY_PROFILE=release
#     builds it as users get it);
#   - pytest, with the Rust loader's batch_dump example for the same-batches test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/pyvenv
say() { printf 'test-python: %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  say "making the venv $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check numpy pytest
if ! "$py" -c "import torch" 2>/dev/null; then
  "$py" -m pip install -q --disable-pip-version-check --no-index --find-links third_party/wheels torch 2>/dev/null \
    || say "torch is not in third_party/wheels with its dependencies: the torch example's test will be skipped"
fi
say "building and installing ./python"
MATURIN_PEP517_ARGS="--profile ${UIC_PY_PROFILE:-dev}" \
  "$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
cargo build -q -p uic-loader --example batch_dump
UIC_BATCH_DUMP="$PWD/target/debug/examples/batch_dump" "$py" -m pytest -q -rs python/tests
