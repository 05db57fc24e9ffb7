#!/usr/bin/env bash
# The README's main command: installs what is missing (scripts/setup.sh), builds the release
# binary and runs `uic demo` on built-in synthetic data. Extra arguments go to `uic demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo run --release --quiet -p uic-tools --bin uic -- demo "$@"
