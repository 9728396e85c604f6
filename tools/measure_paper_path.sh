#!/usr/bin/env bash
# Walks the README's paper-scale path at 256x256 with the `paper` preset on this machine, with tiny
# budgets, and prints the wall time and peak memory (maximum resident set) of every stage as a
# Markdown table: what a user needs to size a machine. Nothing is downloaded: the VGG16 and
# InceptionV3 weights are random-weight stand-ins of the real architectures (as the parity tests
# make them), the data an ImageNet-style folder of two classes of generated JPEGs.
#
#   bash tools/measure_paper_path.sh [WORK_DIR]      (default /tmp/seqgan-paper-path)
#
# Runs `build/seqgan`; takes about 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="${1:-/tmp/seqgan-paper-path}"
seqgan="$root/build/seqgan"
py=/usr/bin/python3
mkdir -p "$work"
cd "$work"

if [ ! -f weights/vgg16.safetensors ] || [ ! -f weights/pt_inception.safetensors ]; then
  echo "making stand-in weights (random VGG16 and InceptionV3 of the real shapes)" >&2
  mkdir -p stand-in
  "$py" "$root/tools/vgg16_fixtures.py" stand-in/vgg >/dev/null
  "$py" "$root/tools/inception_fixtures.py" stand-in/inception >/dev/null
  mkdir -p weights
  mv stand-in/vgg/vgg16.safetensors weights/vgg16.safetensors
  mv stand-in/inception/inception.safetensors weights/pt_inception.safetensors
  rm -rf stand-in
fi
if [ ! -d data/imagenet ]; then
  echo "making an ImageNet-style folder: 2 classes x 12 JPEGs (train), x 4 (val)" >&2
  "$py" - <<'PY'
import os
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for split, n in (("train", 12), ("val", 4)):
    for c in ("n01440764", "n01443537"):
        d = os.path.join("data/imagenet", split, c)
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            h, w = rng.integers(300, 500, size=2)
            a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(a).save(os.path.join(d, f"{c}_{i}.JPEG"), quality=90)
PY
fi

rows=()
stage() {  # stage NAME ARGS...: runs `seqgan ARGS`, records its wall time and peak memory
  local name="$1"
  shift
  echo "== $name: seqgan $*" >&2
  /usr/bin/time -f "%e %M" -o time.txt "$seqgan" "$@" > "log-${name// /-}.txt" 2>&1 || {
    cat "log-${name// /-}.txt" >&2
    exit 1
  }
  read -r secs kb < time.txt
  rows+=("| $name | $(printf '%.0f' "$secs") s | $(awk -v k="$kb" 'BEGIN { printf "%.1f GB", k / 1048576 }') |")
}

common=(--preset paper --set data.root=data/imagenet/train --set data.val_root=data/imagenet/val)
rm -rf runs
stage "tokenizer phase 1 (3 steps, batch 2, GAN on)" train-tokenizer "${common[@]}" --phase 1 --out runs/phase1 \
  --set train_tokenizer.batch_size=2 --set train_tokenizer.iterations=3
stage "tokenizer phase 2 (3 steps, batch 2)" train-tokenizer "${common[@]}" --phase 2 --out runs/phase2 \
  --init runs/phase1/tokenizer.safetensors --set phase2.batch_size=2 --set phase2.iterations=3
stage "tokenize (24 images)" tokenize "${common[@]}" --tokenizer runs/phase1/tokenizer.safetensors --split train \
  --out runs/tokens-train.safetensors
stage "AR transformer, 172M (3 steps, batch 4)" train-transformer "${common[@]}" --kind ar \
  --tokens runs/tokens-train.safetensors --out runs/ar --set train_ar.batch_size=4 --set train_ar.iterations=3 \
  --set train_ar.val_fraction=0.25
stage "NAR transformer, 172M (3 steps, batch 4)" train-transformer "${common[@]}" --kind nar \
  --tokens runs/tokens-train.safetensors --out runs/nar --set train_nar.batch_size=4 --set train_nar.iterations=3 \
  --set train_nar.val_fraction=0.25
stage "sample AR (2 images, 256 tokens each)" sample "${common[@]}" --model runs/ar/transformer.safetensors \
  --tokenizer runs/phase2/tokenizer.safetensors --classes 0,1 --per-class 1 --out runs/samples-ar
stage "sample NAR (2 images)" sample "${common[@]}" --model runs/nar/transformer.safetensors \
  --tokenizer runs/phase2/tokenizer.safetensors --classes 0,1 --per-class 1 --out runs/samples-nar
stage "fid-stats (8 validation images, InceptionV3)" fid-stats "${common[@]}" data:test --count 8 \
  --out runs/val-stats.safetensors
stage "evaluate rfid (8 validation images)" evaluate rfid "${common[@]}" --tokenizer runs/phase2/tokenizer.safetensors \
  --count 8

echo
echo "| stage (256x256, \`paper\` preset) | wall time | peak memory |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "files: $(du -h runs/phase1/checkpoint.safetensors | cut -f1) phase-1 checkpoint," \
  "$(du -h runs/phase2/checkpoint.safetensors | cut -f1) phase-2 checkpoint," \
  "$(du -h runs/ar/checkpoint.safetensors | cut -f1) transformer checkpoint," \
  "$(du -h runs/ar/transformer.safetensors | cut -f1) transformer model"
echo "machine: $(nproc) cores, $("$seqgan" --version)"
