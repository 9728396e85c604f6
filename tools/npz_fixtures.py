#!/usr/bin/python3
"""NumPy .npz fixtures for the C++ reader and writer (src/io/npz.cpp), written by numpy itself
(np.savez, np.savez_compressed, np.lib.format) and by zipfile for the damaged ones.

    npz_fixtures.py DIR          the fixtures, and expected.safetensors with the arrays they hold
    npz_fixtures.py check FILE stored|deflated
                                 exit 0 when FILE (written by seqgan) holds exactly the expected()
                                 arrays, each member compressed as said
    npz_fixtures.py corpus DIR   fuzzer seeds (fuzz/corpus/npz)
"""
import io
import os
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402


def expected():
    """An ADM-style batch: uint8 images, the FID moments, and a mix of dtypes."""
    return {
        "arr_0": (np.arange(4 * 8 * 8 * 3) % 251).astype(np.uint8).reshape(4, 8, 8, 3),
        "mu": np.linspace(-1.0, 2.0, 5),
        "sigma": np.arange(25, dtype=np.float64).reshape(5, 5) / 7.0,
        "labels": np.array([3, 1, 4, 1], dtype=np.int64),
        "f32": np.array([[0.5, -1.25, 3.0], [1e-3, 7.0, -0.0]], dtype=np.float32),
        "flags": np.array([True, False, True]),
    }


def kinds():
    """Byte orders, memory orders and dtypes numpy writes; seqgan reads each as this C-order array."""
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5.5
    return {
        "big_f4": (base.astype(">f4"), base),
        "big_i8": (np.array([1, -2, 2 ** 40], dtype=">i8"), np.array([1, -2, 2 ** 40], dtype=np.int64)),
        "fortran": (np.asfortranarray(base), base),
        "f16": (np.array([0.5, -2.0, 65504.0], dtype=np.float16),) * 2,
        "i8": (np.array([-128, 0, 127], dtype=np.int8),) * 2,
        "i16": (np.array([-32768, 5, 32767], dtype=np.int16),) * 2,
        "i32": (np.array([[-7, 9]], dtype=np.int32),) * 2,
        "scalar": (np.array(42.5),) * 2,
        "empty": (np.zeros((0, 3), dtype=np.float32),) * 2,
    }


def npy(array, version=None):
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version, allow_pickle=True)
    return out.getvalue()


def with_header(data, text):
    """A version-1 .npy with its header dict replaced by `text` (padded as numpy pads it)."""
    length = data[8] | (data[9] << 8)
    header = text.encode("latin1")
    header += b" " * (length - 1 - len(header)) + b"\n"
    assert len(header) == length
    return data[:10] + header + data[10 + length:]


def zip_of(members, compression=zipfile.ZIP_STORED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def write(d):
    os.makedirs(d, exist_ok=True)
    e = expected()
    np.savez(os.path.join(d, "savez.npz"), **e)
    np.savez_compressed(os.path.join(d, "savez_compressed.npz"), **e)
    k = kinds()
    with open(os.path.join(d, "kinds.npz"), "wb") as f:
        f.write(zip_of({n + ".npy": npy(a) for n, (a, _) in k.items()}, zipfile.ZIP_DEFLATED))
    with open(os.path.join(d, "version2.npz"), "wb") as f:
        f.write(zip_of({"v2.npy": npy(e["sigma"], version=(2, 0)), "v3.npy": npy(e["mu"], version=(3, 0))}))
    write_safetensors(os.path.join(d, "expected.safetensors"),
                      {**e, **{"kinds." + n: np.ascontiguousarray(c) for n, (_, c) in k.items()
                               if c.ndim > 0 and c.dtype in (np.float32, np.float64, np.int64, np.uint8)}})

    # Damaged and foreign files, each refused with its own message.
    bad = {}
    bad["object"] = zip_of({"obj.npy": npy(np.array([{"a": 1}, None], dtype=object))})
    bad["structured"] = zip_of({"rec.npy": npy(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))})
    good = npy(np.arange(10, dtype=np.float32))
    lie = good.replace(b"(10,)", b"(99,)")  # the header claims 99 elements, the data holds 10
    assert len(lie) == len(good)
    bad["lying_shape"] = zip_of({"x.npy": lie})
    # 2^62 x 8 elements: more than int64 can count.
    bad["overflow"] = zip_of({"x.npy": with_header(good, "{'descr': '<f4', 'fortran_order': False, "
                                                         "'shape': (4611686018427387904, 8), }")})
    bad["truncated"] = open(os.path.join(d, "savez.npz"), "rb").read()[:700]
    bad["not_npy"] = zip_of({"readme.txt": b"hello"})
    bad["not_zip"] = b"\x93NUMPY not a zip at all"
    flipped = bytearray(open(os.path.join(d, "savez_compressed.npz"), "rb").read())
    flipped[200] ^= 0xFF
    bad["flipped"] = bytes(flipped)
    for name, data in bad.items():
        with open(os.path.join(d, "bad_" + name + ".npz"), "wb") as f:
            f.write(data)


def check(path, method):
    e = expected()
    want = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}[method]
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.compress_type != want:
                print("member", info.filename, "has compression", info.compress_type, "expected", want)
                return 1
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        if names != set(e):
            print("members", sorted(names), "expected", sorted(e))
            return 1
        for n, a in e.items():
            b = z[n]
            if b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
                print("array", n, "differs:", b.dtype, b.shape, "expected", a.dtype, a.shape)
                return 1
    print("ok")
    return 0


def corpus(d):
    os.makedirs(d, exist_ok=True)
    e = {k: v for k, v in expected().items() if k != "arr_0"}
    np.savez(os.path.join(d, "small.npz"), **e)
    np.savez_compressed(os.path.join(d, "small_compressed.npz"), **e)
    with open(os.path.join(d, "kinds.npz"), "wb") as f:
        f.write(zip_of({n + ".npy": npy(a) for n, (a, _) in kinds().items()}))
    with open(os.path.join(d, "version2.npz"), "wb") as f:
        f.write(zip_of({"v2.npy": npy(e["sigma"], version=(2, 0))}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 3 and sys.argv[1] == "corpus":
        corpus(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 2:
        write(sys.argv[1])
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
