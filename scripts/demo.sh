#!/usr/bin/env bash
# The README's first command: installs what seqgan needs, builds it, and runs `seqgan demo`
# (the whole system on Fashion-MNIST, about 23 minutes on 2 CPU cores, plus the build).
# Arguments go to `seqgan demo` (e.g. --out DIR); a re-run resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir="${SEQGAN_BUILD_DIR:-build}"
"$build_dir/seqgan" demo "$@"
