#!/usr/bin/env bash
# The README's first command: sets up, builds and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir="${SEQGAN_BUILD_DIR:-build}"
"$build_dir/seqgan" --help
