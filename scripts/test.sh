#!/usr/bin/env bash
# The README's test command: installs what is missing (scripts/setup.sh), then runs every
# test of the workspace (after scripts/test-venv.sh, which installs the S3 server the
# object-storage tests start), the GPU build's compile checks (scripts/check-gpu-build.sh),
# then the Python package's (scripts/test-python.sh). Needs no data outside the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/test-venv.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
scripts/check-gpu-build.sh
scripts/test-python.sh
