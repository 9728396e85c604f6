#!/usr/bin/env python3
"""LMDB environments and tar shards for the C++ data-source tests (tests/test_lmdb_shards.cpp),
with the pixels Pillow decodes from them.

    /usr/bin/python3 tools/lmdb_shard_fixtures.py OUTDIR

Needs Debian's python3-lmdb, python3-pil (with WebP) and numpy. Writes under OUTDIR:
  lmdb/                 LSUN's layout: 12 keys of 40 hex digits (sha1 digests, as LSUN's export
                        has) -> encoded 40x30 images: WebP (lossy) mostly, some JPEG, one PNG
  lmdb_one_bad/         4 images, the third value a WebP cut short (for skip_bad)
  lmdb_not_images/      values that are text, not images
  lmdb_subdb/           the images in a named sub-database (another layout)
  lmdb_empty/           an environment without any key
  shards/               3 tar shards in the webdataset layout written by Python's tarfile, with
                        KEY.cls, KEY.json members beside the images, one member name longer than
                        100 bytes (a pax header), an upper-case extension, a key whose first member
                        is its .json, and classes.json
  bad/empty.tar         0 bytes
  bad/zeros.tar         a tar without members (only the end blocks)
  bad/cut.tar           a shard cut in the middle of a member's data
  bad/txt_only.tar      only a .txt member
  bad/checksum.tar      a header byte changed after writing
  bad/two_images.tar    KEY.jpg and KEY.png
  bad/mixed.tar         one image with .cls, one without
  bad/bad_cls.tar       a .cls member holding "3x"
  bad_classes/          labels up to 3 but a classes.json naming 2 classes
  expected.safetensors  (written last) per item the RGB pixels Pillow decodes,
                        np.asarray(Image.open(f).convert("RGB")), as U8 [H, W, 3]:
                          lmdb.<i> (i in key order), lmdb.grey.<i> (convert("L")), shards.<i>;
                        shards.labels I64 [N], shards.offsets I64 [S + 1];
                        metadata: lmdb_keys and shard_members (JSON lists, item order), and
                        lmdb_one_bad_key (the key of the corrupt value)
"""
import hashlib
import io
import json
import os
import sys
import tarfile

import lmdb
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402

W, H = 40, 30


def picture(rng, w=W, h=H):
    """A smooth colour pattern with some noise: compresses like a photo, decodes differently per codec."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(0.05, 0.3, size=(3, 2))
    channels = [127.5 + 100 * np.sin(freq[c, 0] * x + freq[c, 1] * y + phase[c]) for c in range(3)]
    img = np.stack(channels, axis=-1) + rng.normal(0, 12, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(img, fmt):
    buf = io.BytesIO()
    if fmt == "WEBP":
        img.save(buf, "WEBP", quality=80)  # lossy, as LSUN's export
    elif fmt == "JPEG":
        img.save(buf, "JPEG", quality=90)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def decoded(data, mode="RGB"):
    return np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert(mode)), dtype=np.uint8)


def write_lmdb(path, items, sub_db=None):
    os.makedirs(path)
    env = lmdb.open(path, map_size=1 << 22, max_dbs=1 if sub_db else 0)
    db = env.open_db(sub_db) if sub_db else None
    with env.begin(write=True) as txn:
        for k, v in items:
            txn.put(k, v, db=db)
    env.close()


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1700000000
    tar.addfile(info, io.BytesIO(data))


def write_tar(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            add_member(tar, name, data)


def main(out):
    rng = np.random.default_rng(20240611)
    expected, meta = {}, {}

    # LSUN's layout: sha1 hex keys, in LMDB's (byte-wise) key order when read back.
    formats = ["WEBP"] * 8 + ["JPEG"] * 3 + ["PNG"]
    items = []
    for i, fmt in enumerate(formats):
        key = hashlib.sha1(f"seqgan-lsun-{i}".encode()).hexdigest().encode()
        items.append((key, encode(picture(rng), fmt)))
    write_lmdb(os.path.join(out, "lmdb"), items)
    items.sort()
    for i, (key, value) in enumerate(items):
        expected[f"lmdb.{i}"] = decoded(value)
        expected[f"lmdb.grey.{i}"] = decoded(value, "L")
    meta["lmdb_keys"] = json.dumps([k.decode() for k, _ in items])

    good = [(hashlib.sha1(f"seqgan-bad-{i}".encode()).hexdigest().encode(), encode(picture(rng), "WEBP"))
            for i in range(4)]
    good.sort()
    bad_key, bad_value = good[2]
    good[2] = (bad_key, bad_value[: len(bad_value) // 2])
    write_lmdb(os.path.join(out, "lmdb_one_bad"), good)
    meta["lmdb_one_bad_key"] = bad_key.decode()
    write_lmdb(os.path.join(out, "lmdb_not_images"),
               [(f"{i:040x}".encode(), f"caption number {i}, not an image".encode()) for i in range(3)])
    write_lmdb(os.path.join(out, "lmdb_subdb"), items[:3], sub_db=b"images")
    write_lmdb(os.path.join(out, "lmdb_empty"), [])

    # Tar shards in the webdataset layout.
    shard_dir = os.path.join(out, "shards")
    os.makedirs(shard_dir)
    long_key = "long/" + "nested-folder-name/" * 6 + "sample-with-a-long-name"
    assert len(long_key) + 5 > 100
    sizes = [(40, 30), (30, 40), (33, 27)]
    shard_specs = [
        # (key, format, label) in member order; ("k-first", "json") puts that key's .json first
        [("k-first", "json"), ("k-a", "JPEG", 2), ("k-first", "PNG", 0), ("k-b", "WEBP", 3), ("k-c", "JPEG", 1)],
        [("k-d", "WEBP", 1), (long_key, "WEBP", 0), ("k-e", "JPG_UPPER", 3), ("k-f", "PNG", 2)],
        [("k-g", "JPEG", 0), ("k-h", "WEBP", 1), ("k-i", "WEBP", 2)],
    ]
    labels, offsets, members = [], [0], []
    for s, spec in enumerate(shard_specs):
        tar_members, samples = [], {}
        for entry in spec:
            key = entry[0]
            if entry[1] == "json":
                tar_members.append((key + ".json", json.dumps({"source": "seqgan fixture"}).encode()))
                continue
            fmt, label = entry[1], entry[2]
            w, h = sizes[len(samples) % len(sizes)]
            data = encode(picture(rng, w, h), "JPEG" if fmt == "JPG_UPPER" else fmt)
            name = key + {"JPEG": ".jpg", "JPG_UPPER": ".JPG", "PNG": ".png", "WEBP": ".webp"}[fmt]
            tar_members += [(name, data), (key + ".cls", f"{label}\n".encode())]
            if key + ".json" not in [m for m, _ in tar_members]:
                tar_members.append((key + ".json", json.dumps({"key": key}).encode()))
            samples[key] = (name, data, label)
        # Samples in the order of their key's first member (webdataset's key: the name up to the
        # first '.' after the last '/').
        keys = []
        for name, _ in tar_members:
            slash = name.rfind("/") + 1
            key = name[: name.index(".", slash)]
            if key not in keys:
                keys.append(key)
        for key in keys:
            name, data, label = samples[key]
            expected[f"shards.{len(labels)}"] = decoded(data)
            labels.append(label)
            members.append(name)
        offsets.append(len(labels))
        write_tar(os.path.join(shard_dir, f"shard-{s:06d}.tar"), tar_members)
    with open(os.path.join(shard_dir, "classes.json"), "w") as f:
        json.dump({"classes": ["cat", "dog", "bird", "fish"]}, f)
    expected["shards.labels"] = np.array(labels, dtype=np.int64)
    expected["shards.offsets"] = np.array(offsets, dtype=np.int64)
    meta["shard_members"] = json.dumps(members)

    # Shards that must fail.
    bad = os.path.join(out, "bad")
    os.makedirs(bad)
    img = encode(picture(rng), "JPEG")
    open(os.path.join(bad, "empty.tar"), "wb").close()
    write_tar(os.path.join(bad, "zeros.tar"), [])
    write_tar(os.path.join(bad, "cut.tar"), [("a.jpg", img), ("a.cls", b"1"), ("b.jpg", img), ("b.cls", b"2")])
    with open(os.path.join(bad, "cut.tar"), "rb") as f:
        whole = f.read()
    # a.jpg's header, its data (rounded to blocks), b.jpg's header, then half of b.jpg's data.
    a_blocks = (len(img) + 511) // 512
    cut = 512 + a_blocks * 512 + 512 + 512 + 512 + len(img) // 2
    with open(os.path.join(bad, "cut.tar"), "wb") as f:
        f.write(whole[:cut])
    write_tar(os.path.join(bad, "txt_only.tar"), [("notes.txt", b"no images here\n")])
    write_tar(os.path.join(bad, "checksum.tar"), [("a.jpg", img)])
    with open(os.path.join(bad, "checksum.tar"), "r+b") as f:
        f.write(b"b")  # the first byte of the first name: the stored checksum no longer matches
    write_tar(os.path.join(bad, "two_images.tar"), [("dup.jpg", img), ("dup.png", encode(picture(rng), "PNG"))])
    write_tar(os.path.join(bad, "mixed.tar"), [("a.jpg", img), ("a.cls", b"1"), ("b.jpg", img)])
    write_tar(os.path.join(bad, "bad_cls.tar"), [("a.jpg", img), ("a.cls", b"3x")])
    bad_classes = os.path.join(out, "bad_classes")
    os.makedirs(bad_classes)
    write_tar(os.path.join(bad_classes, "shard-000000.tar"), [("a.jpg", img), ("a.cls", b"3")])
    with open(os.path.join(bad_classes, "classes.json"), "w") as f:
        json.dump({"classes": ["cat", "dog"]}, f)

    write_safetensors(os.path.join(out, "expected.safetensors"), expected, meta)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
