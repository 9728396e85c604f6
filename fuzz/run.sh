#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, all at once, on a working copy of the
# seed corpus (new inputs found are kept in fuzz/corpus-work/, not committed). Prints each
# target's final statistics; a crash leaves its input as fuzz/crash-* and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
build="${SEQGAN_FUZZ_BUILD:-build-fuzz}"
targets=(${SEQGAN_FUZZ_TARGETS:-fuzz_config fuzz_idx fuzz_image fuzz_labels fuzz_metrics fuzz_npz fuzz_safetensors fuzz_tar})
corpus_of() { case "$1" in fuzz_config) echo config ;; fuzz_idx) echo idx ;; fuzz_tar) echo tar ;; fuzz_image) echo image ;; fuzz_metrics) echo metrics ;; fuzz_labels) echo labels ;; fuzz_npz) echo npz ;; *) echo safetensors ;; esac; }
pids=()
for t in "${targets[@]}"; do
  c=$(corpus_of "$t")
  mkdir -p "fuzz/corpus-work/$c"
  cp -n fuzz/corpus/"$c"/* "fuzz/corpus-work/$c/" 2>/dev/null || true
  "$build/fuzz/$t" "fuzz/corpus-work/$c" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 \
    -artifact_prefix="fuzz/crash-$t-" -print_final_stats=1 > "fuzz/corpus-work/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  if ! wait "${pids[$i]}"; then status=1; echo "${targets[$i]}: FAILED (see fuzz/corpus-work/${targets[$i]}.log)"; fi
  echo "== ${targets[$i]}"
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|ERROR" "fuzz/corpus-work/${targets[$i]}.log" || true
done
exit $status
