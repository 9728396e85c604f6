"""The Python side of `seqgan bench`'s data-loader figures.

  python3 tools/reference/loader.py make DIR COUNT     # ImageNet-like JPEGs, written by PIL
  python3 tools/reference/loader.py time DIR RES WORKERS BATCH SECONDS

`make` writes COUNT photos-like RGB images of about 500x375 (ImageNet's most common size), JPEG
quality 90, into DIR/class0 and DIR/class1 (two classes, so ImageFolder labels them). `time` runs
torchvision's ImageFolder + DataLoader with the training transforms of a 256x256 tokenizer
(Resize(RES) bilinear, RandomCrop(RES), RandomHorizontalFlip, ToTensor, scaled to [-1, 1]) with
WORKERS worker processes and batches of BATCH, and prints {"rate": images per second} for whole
epochs-worth of batches taken over at least SECONDS (the first batch, which starts the workers,
is not timed)."""
import json
import os
import sys
import time

import numpy as np
from PIL import Image


def make(out, count):
    rng = np.random.RandomState(0)
    for i in range(count):
        w, h = (500, 375) if i % 4 else (375, 500)  # a quarter portrait, as in photo collections
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([
            128 + 100 * np.sin(x / (20 + 7 * (i % 5)) + i),
            128 + 100 * np.cos(y / (25 + 5 * (i % 3)) - i),
            128 + 80 * np.sin((x + y) / 40.0 + 0.5 * i)], axis=-1)
        texture = rng.normal(0, 18, size=(h, w, 3))  # detail, so the JPEG is photo-sized (~50-100 kB)
        pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
        folder = os.path.join(out, f"class{i % 2}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels, "RGB").save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)


def timed(folder, resolution, workers, batch, seconds):
    import torch
    from torchvision import datasets, transforms

    torch.set_num_threads(1)  # the workers are the parallelism, as in a training job's loader
    tf = transforms.Compose([
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.RandomCrop(resolution),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    ])
    data = datasets.ImageFolder(folder, transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # workers started
    images, start = 0, time.perf_counter()
    while True:
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        images += x.shape[0]
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return images / elapsed


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 7 and sys.argv[1] == "time":
        rate = timed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
        import torch
        import torchvision
        print(json.dumps({"rate": rate, "torch": torch.__version__, "torchvision": torchvision.__version__}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
