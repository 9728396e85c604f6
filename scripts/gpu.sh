#!/usr/bin/env bash
# Builds seqgan against the libtorch of the machine's PyTorch (2.x, CUDA), runs the tests that do
# not need the Debian data and reference packages, and the GPU benchmarks, in one call:
#
#   bash scripts/gpu.sh [OUT_DIR]      # default OUT_DIR: $OUT, else out/gpu
#
# Dependencies the machine lacks may be given as Debian .deb files in .gpu-deps/, made on a Debian
# 12 machine with
#   apt-get download nlohmann-json3-dev libstb-dev libjpeg62-turbo-dev libjpeg62-turbo libwebp-dev \
#     libwebp7 libwebpdemux2 libwebpmux3 liblmdb-dev liblmdb0 libzip-dev libzip4 libssl-dev
# (header-only nlohmann-json and stb; the image decoders, liblmdb and libzip with their shared
# libraries).
# They are unpacked into build-gpu/deps with `dpkg -x`, nothing is installed; the build and the
# tests find them there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$root/out/gpu}}
build="$root/build-gpu"
mkdir -p "$out" "$build"
deps="$build/deps"
if compgen -G "$root/.gpu-deps/*.deb" >/dev/null; then
  for d in "$root"/.gpu-deps/*.deb; do dpkg -x "$d" "$deps"; done
fi
multiarch="$deps/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
export LD_LIBRARY_PATH="$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' |
  tee "$out/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/versions.txt" || true

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DCMAKE_INCLUDE_PATH="$deps/usr/include" \
  -DSEQGAN_BUILD_TESTS=ON -DSEQGAN_BUILD_BENCH=ON 2>&1 | tail -n 20 | tee "$out/configure.txt"
# The command and the tests first; the benchmarks separately, so that a benchmark that does not
# build on this libtorch cannot keep the tests from running.
cmake --build "$build" -j "$(nproc)" --target seqgan seqgan_tests 2>&1 | tail -n 40 | tee "$out/build.txt"
bench_ok=1
cmake --build "$build" -j "$(nproc)" --target seqgan_bench > "$out/build_bench.txt" 2>&1 || bench_ok=0
[ "$bench_ok" = 1 ] || { echo "gpu.sh: the benchmarks did not build (see build_bench.txt)"; tail -n 30 "$out/build_bench.txt"; }

# Tests that need neither Fashion-MNIST nor the Debian python3-torchvision reference.
tests_rc=0
filter=${SEQGAN_GPU_TESTS:-'Cuda*:InceptionScore*:FrechetDistance.ClosedForm*:Transformer*:Sampling*:Quantizer*:Attention*:WindowAttention*:Tokenizer.*:Discriminator*:Safetensors*:Checkpoint*:Config*'}
"$build/tests/seqgan_tests" --gtest_filter="$filter" > "$out/tests.txt" 2>&1 || tests_rc=$?
grep -E "^\[ +(OK|FAILED|SKIPPED) +\]|^\[  (PASSED|FAILED|SKIPPED)  \]" "$out/tests.txt" | tee "$out/test_summary.txt"

if [ "$bench_ok" = 1 ]; then
# The bf16 matrix-product peak; the 172M (and 305M) transformer's training step under bf16
# autocast with its fraction of that peak; 64 images by NAR (12 steps) and AR (256 tokens);
# peak GPU memory of each.
"$build/bench/seqgan_bench" --benchmark_filter='BM_MatmulPeak_bf16_cuda|BM_TransformerTrainStep_paper_cuda|BM_NarSample64_paper_cuda|BM_ArSample64_paper_cuda' 2>&1 | tee "$out/bench_transformer_gpu.txt"
# AR sampling with and without the key/value cache on the paper's 172M model; FID features.
SEQGAN_BENCH_TRANSFORMER=paper "$build/bench/seqgan_bench" --benchmark_filter='^BM_ArSample/' 2>&1 | tee "$out/bench_ar.txt"
"$build/bench/seqgan_bench" --benchmark_filter='BM_InceptionFeatures' 2>&1 | tee "$out/bench_eval.txt"
# A whole phase-1 training step of the paper's tokenizer at 256x256 (bf16 autocast).
"$build/bench/seqgan_bench" --benchmark_filter='BM_TokenizerPhase1Step' 2>&1 | tee "$out/bench_tokenizer.txt"
fi
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader | tee -a "$out/versions.txt" || true

# The benchmarks run even when a test failed; the exit status still says so.
exit "$tests_rc"
