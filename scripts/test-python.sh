#!/usr/bin/env bash
# The Python package's tests (python/tests), run by scripts/test.sh after the Rust tests:
#   - a venv in target/pyvenv with numpy and pytest from PyPI;
#   - torch, from scripts/test-venv.sh (PyPI), else offline from third_party/wheels with everything it
#     needs (otherwise the example's test is skipped, saying so);
#   - the native module built by cargo in the workspace's dev profile, beside the uic binary
#     so that the features are unified as in `cargo test --workspace` and the Rust build the
#     tests just made is reused (maturin, building the crate alone, compiled the dependency
#     tree a second time: 10-13 minutes), then installed with the package's Python files into
#     the venv; UIC_PY_PROFILE=release builds and installs it as users get it instead
#     (`pip install ./python`, maturin from PyPI);
#   - pytest, with the Rust loader's batch_dump example for the same-batches test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/pyvenv
say() { printf 'test-python: %s\n' "$*" >&2; }

scripts/test-venv.sh
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
  "$py" -m pip install -q --disable-pip-version-check --no-index --find-links third_party/wheels torch 2>/dev/null \
    || say "torch is neither in the venv (scripts/test-venv.sh) nor in third_party/wheels: the torch example's test will be skipped"
fi
if [ "${UIC_PY_PROFILE:-dev}" = release ]; then
  say "building and installing ./python with maturin (release)"
  MATURIN_PEP517_ARGS="--profile release" \
    "$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
  cargo build -q -p uic-loader --example batch_dump
else
  say "building the native module with cargo and installing ./python into $venv"
  # No target selection here: with one (`--example`), cargo builds only what it names.
  PYO3_BUILD_EXTENSION_MODULE=1 cargo build -q -p uic-python -p uic-tools
  # The whole workspace's features, as `cargo test --workspace --all-targets` built it
  # (`-p uic-loader` alone rebuilt `image` and `criterion` with fewer features).
  cargo build -q --workspace --examples
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$py" -m pip uninstall -q -y uic 2>/dev/null || true
  rm -rf "$site/uic"
  mkdir -p "$site/uic"
  cp python/uic/__init__.py python/uic/_uic.pyi python/uic/py.typed "$site/uic/"
  cp target/debug/lib_uic.so "$site/uic/_uic.abi3.so"
fi
UIC_BATCH_DUMP="$PWD/target/debug/examples/batch_dump" "$py" -m pytest -q -rs python/tests
