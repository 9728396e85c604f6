#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the README's second command; CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir="${SEQGAN_BUILD_DIR:-build}"

# The installed package as a user gets it: `cmake --install` into a prefix, then the embedding
# example built against that prefix alone, once with find_package(seqgan) and once with
# pkg-config. The test suite runs both programs beside the build tree's.
prefix="$(pwd)/$build_dir/install-check"
rm -rf "$prefix" "$build_dir/embed-installed"
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cmake -S examples/embed -B "$build_dir/embed-installed" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" ${SEQGAN_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir/embed-installed"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --exists seqgan
# shellcheck disable=SC2046
g++ -std=c++17 -O1 examples/embed/main.cpp -o "$build_dir/embed-installed/seqgan_embed_pkgconfig" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs seqgan)
export SEQGAN_INSTALLED_EMBED_EXAMPLES="$build_dir/embed-installed/seqgan_embed:$build_dir/embed-installed/seqgan_embed_pkgconfig"
SEQGAN_INSTALLED_EMBED_EXAMPLES="$(pwd)/${SEQGAN_INSTALLED_EMBED_EXAMPLES//:/:$(pwd)/}"

ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" --timeout 900
