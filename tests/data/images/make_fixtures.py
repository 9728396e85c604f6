#!/usr/bin/python3
"""Regenerates the image, IDX and grid fixtures of tests/test_image.cpp and tests/test_data.cpp.

Needs Debian's python3-pil, python3-torch and python3-torchvision (run with /usr/bin/python3).
Writes next to this file, into ../idx, and into fuzz/corpus/idx (the IDX fuzzer's seeds).
"""
import gzip
import os
import struct

import torch
import torchvision
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IDX = os.path.join(HERE, "..", "idx")
CORPUS = os.path.join(HERE, "..", "..", "..", "fuzz", "corpus", "idx")


def pixels(w, h, c, f):
    return bytes(f(x, y, k) & 0xFF for y in range(h) for x in range(w) for k in range(c))


def write_images():
    # Small exact images; the tests recompute the expected values with the same formulas.
    w, h = 5, 4
    Image.frombytes("L", (w, h), pixels(w, h, 1, lambda x, y, k: 13 * x + 50 * y)).save(os.path.join(HERE, "grey.png"))
    Image.frombytes("LA", (w, h), pixels(w, h, 2, lambda x, y, k: (13 * x + 50 * y) if k == 0 else 60 * x + 5)).save(
        os.path.join(HERE, "grey_alpha.png"))
    Image.frombytes("RGB", (w, h), pixels(w, h, 3, lambda x, y, k: 40 * x + 60 * y + 70 * k)).save(
        os.path.join(HERE, "rgb.png"))
    Image.frombytes("RGBA", (w, h), pixels(w, h, 4, lambda x, y, k: (40 * x + 60 * y + 70 * k) if k < 3 else 60 * x + 5)
                    ).save(os.path.join(HERE, "rgba.png"))
    # 16-bit grey: Pillow (and so seqgan) clips it to 255 on conversion to 8 bits.
    im16 = Image.new("I;16", (w, h))
    im16.putdata([257 * (13 * x + 50 * y) for y in range(h) for x in range(w)])
    im16.save(os.path.join(HERE, "grey16.png"))
    # JPEGs: smooth content so that quality 95 stays within a few levels of the source.
    jw, jh = 32, 24
    Image.frombytes("RGB", (jw, jh), pixels(jw, jh, 3, lambda x, y, k: 20 + 3 * x + 2 * y + 40 * k)).save(
        os.path.join(HERE, "rgb.jpg"), quality=95, subsampling=0)
    Image.frombytes("L", (jw, jh), pixels(jw, jh, 1, lambda x, y, k: 30 + 5 * x + 2 * y)).save(
        os.path.join(HERE, "grey.jpg"), quality=95)


def idx_bytes(dims, data):
    return struct.pack(">I", 0x800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def write_idx():
    # train: 3 images 4x5 gzip-compressed; test (t10k): 2 images raw.
    train = idx_bytes([3, 4, 5], [(7 * i) % 256 for i in range(60)])
    train_labels = idx_bytes([3], [2, 0, 9])
    test = idx_bytes([2, 4, 5], [(255 - 3 * i) % 256 for i in range(40)])
    test_labels = idx_bytes([2], [1, 7])
    with gzip.GzipFile(os.path.join(IDX, "train-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(train)
    with gzip.GzipFile(os.path.join(IDX, "train-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(train_labels)
    with open(os.path.join(IDX, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(test)
    with open(os.path.join(IDX, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(test_labels)
    os.makedirs(CORPUS, exist_ok=True)
    seeds = {"images": train, "labels": train_labels, "images_gz": gzip.compress(test, mtime=0),
             "labels_gz": gzip.compress(test_labels, mtime=0), "bad_magic": b"\x00\x00\x0d\x03" + train[4:],
             "truncated": train[:30], "four_dims": idx_bytes([1, 2, 2, 2], range(8))}
    for name, data in seeds.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)


def write_grid_reference():
    # torchvision's make_grid on exactly representable values; the test builds the same input.
    x = torch.arange(5 * 3 * 4 * 6, dtype=torch.float32).reshape(5, 3, 4, 6) / 64.0
    grid = torchvision.utils.make_grid(x, nrow=3, padding=2, pad_value=0.5)
    assert list(grid.shape) == [3, 14, 26], grid.shape
    grid.contiguous().numpy().astype("<f4").tofile(os.path.join(HERE, "make_grid_5x3x4x6_nrow3_pad2.f32"))


if __name__ == "__main__":
    write_images()
    write_idx()
    write_grid_reference()
