#!/usr/bin/python3
"""safetensors fixtures for the C++ tests, written and checked by hand (struct + json + numpy).

The `safetensors` Python package is deliberately not used: this script is a second, independent
implementation of the format, so the C++ reader and writer are checked against code we did not
share with them.

    safetensors_fixtures.py write [DIR]   fixtures for tests/ (default tests/data/safetensors)
    safetensors_fixtures.py corpus [DIR]  fuzzer seeds (default fuzz/corpus/safetensors)
    safetensors_fixtures.py check FILE    verify a file the C++ side wrote from EXPECTED; exit 0 if ok
"""
import json
import os
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# dtype name -> (numpy dtype of the stored bytes, element size). BF16 has no numpy dtype: its
# bytes are the upper half of a float32, kept as uint16.
DTYPES = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "U8": ("u1", 1), "BOOL": ("?", 1),
}

# The values tests/test_safetensors.cpp expects; F16 and BF16 values are exactly representable.
EXPECTED = {
    "f64": ("F64", [3], [0.1, -2.5, 1e300]),
    "f32": ("F32", [2, 3], [0.0, -1.5, 2.25, 1024.0, -0.125, 0.1]),
    "f16": ("F16", [4], [0.5, -2.0, 65504.0, 2.0 ** -14]),
    "bf16": ("BF16", [2, 2], [1.0, -0.5, 256.0, 2.0 ** -7]),
    "i64": ("I64", [3], [-(2 ** 63), 2 ** 63 - 1, 42]),
    "i32": ("I32", [2, 2], [-(2 ** 31), 2 ** 31 - 1, 7, -7]),
    "u8": ("U8", [5], [0, 1, 127, 128, 255]),
    "bool": ("BOOL", [4], [True, False, False, True]),
    "scalar": ("F32", [], [42.0]),
    "empty": ("F32", [0, 3], []),
}
EXPECTED_METADATA = {
    "format": "seqgan", "format_version": "1", "kind": "test",
    "config": '{"dim":8,"name":"fixture"}', "step": "1234",
}
# Names as torchvision gives them, no __metadata__: a stand-in for converted public weights.
PLAIN = {
    "features.0.weight": ("F32", [2, 1, 1, 1], [1.0, 2.0]),
    "features.0.bias": ("F32", [2], [0.5, -0.5]),
    "classifier.6.weight": ("F32", [1, 2], [3.0, 4.0]),
    "classifier.6.bias": ("F32", [1], [0.25]),
}


def encode(dtype, shape, values):
    if dtype == "BF16":
        f32 = np.array(values, "<f4")
        bits = (f32.view("<u4") >> 16).astype("<u2")
        assert np.array_equal((bits.astype("<u4") << 16).view("<f4"), f32), "BF16 value not exact"
        array = bits
    else:
        array = np.array(values, DTYPES[dtype][0])
        if dtype == "F16":
            assert np.array_equal(array.astype("<f8"), np.array(values, "<f8")), "F16 value not exact"
    return array.reshape(shape).tobytes()


def checksums(tensors):
    """seqgan's "seqgan.crc32" metadata value: zlib's CRC-32 of each tensor's bytes, as compact
    JSON with sorted keys."""
    sums = {name: "%08x" % zlib.crc32(encode(*tensors[name])) for name in tensors}
    return json.dumps(sums, separators=(",", ":"), sort_keys=True)


def image(tensors, metadata=None, with_checksums=False):
    """Bytes laid out as seqgan writes them: widest dtype first then by name, so every tensor is
    aligned with no gaps; JSON with sorted keys, padded with spaces to a multiple of 8. With
    checksums, the metadata also holds "seqgan.crc32", as every file seqgan writes does."""
    order = sorted(tensors, key=lambda n: (-DTYPES[tensors[n][0]][1], n))
    header, data, offset = {}, b"", 0
    if with_checksums:
        metadata = dict(metadata or {}, **{"seqgan.crc32": checksums(tensors)})
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        dtype, shape, values = tensors[name]
        blob = encode(dtype, shape, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        data += blob
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def raw(header_text, data=b"", length=None):
    text = header_text.encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {path} ({len(blob)} bytes)")


def write_fixtures(directory):
    os.makedirs(directory, exist_ok=True)
    write(os.path.join(directory, "all_dtypes.safetensors"),
          image(EXPECTED, dict(EXPECTED_METADATA, writer="python")))
    write(os.path.join(directory, "plain.safetensors"), image(PLAIN))
    write(os.path.join(directory, "all_dtypes_crc32.safetensors"),
          image(EXPECTED, dict(EXPECTED_METADATA, writer="python"), with_checksums=True))


def write_corpus(directory):
    os.makedirs(directory, exist_ok=True)
    good = image(EXPECTED, dict(EXPECTED_METADATA, writer="python"))
    seeds = {
        "valid_all_dtypes": good,
        "valid_plain": image(PLAIN),
        "valid_checksums": image(EXPECTED, dict(EXPECTED_METADATA), with_checksums=True),
        "checksums_not_json": image(PLAIN, {"seqgan.crc32": "{not json"}),
        "checksums_unknown_tensor": image(PLAIN, {"seqgan.crc32": '{"nope":"00000000"}'}),
        "checksums_bad_hex": image(PLAIN, {"seqgan.crc32": '{"features.0.bias":"0000000G"}'}),
        "valid_empty_header": raw("{}      "),
        "empty": b"",
        "short_length": b"\x08\x00\x00",
        "truncated": good[: len(good) - 5],
        "huge_header_length": raw("{}", length=10 ** 15),
        "invalid_json": raw('{"a": {"dtype": "F32",'),
        "overlap": raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                       '"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', bytes(4)),
        "out_of_bounds": raw('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', bytes(8)),
        "unknown_dtype": raw('{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
        "duplicate_key": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                             '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
        "negative_dim": raw('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'),
        "bool_byte_2": raw('{"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', b"\x01\x02"),
        "zero_dim_overflow": raw('{"a":{"dtype":"U8","shape":[0,4611686018427387904,4],'
                                 '"data_offsets":[0,0]}}'),
    }
    for name, blob in seeds.items():
        write(os.path.join(directory, name + ".safetensors"), blob)


def fail(message):
    print(f"check failed: {message}", file=sys.stderr)
    sys.exit(1)


def check(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail(f"{path}: {len(blob)} bytes, less than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n % 8 != 0 or 8 + n > len(blob):
        fail(f"{path}: header length {n} is not a multiple of 8 or exceeds the file")
    text = blob[8:8 + n].decode("utf-8")
    if text.rstrip(" ") != text.strip() or not text.startswith("{"):
        fail(f"{path}: header must be a JSON object padded with spaces only")
    header = json.loads(text)
    data = blob[8 + n:]

    metadata = header.pop("__metadata__", {})
    metadata.pop("writer", None)
    sums = json.loads(metadata.pop("seqgan.crc32", "{}"))
    for name, hex_sum in sums.items():
        if name not in header:
            fail(f"{path}: a checksum for tensor '{name}', which the file does not hold")
        begin, end = header[name]["data_offsets"]
        if "%08x" % zlib.crc32(data[begin:end]) != hex_sum:
            fail(f"{path}: tensor '{name}' has CRC-32 {zlib.crc32(data[begin:end]):08x}, the header says {hex_sum}")
    if set(sums) != set(header):
        fail(f"{path}: checksums for {sorted(sums)}, tensors {sorted(header)}")
    if metadata != EXPECTED_METADATA:
        fail(f"{path}: metadata {metadata} != {EXPECTED_METADATA}")
    if set(header) != set(EXPECTED):
        fail(f"{path}: tensors {sorted(header)} != {sorted(EXPECTED)}")

    covered = 0
    for name in sorted(header, key=lambda k: tuple(header[k]["data_offsets"])):
        entry = header[name]
        dtype, shape, values = EXPECTED[name]
        begin, end = entry["data_offsets"]
        if entry["dtype"] != dtype or entry["shape"] != shape:
            fail(f"{path}: tensor '{name}' is {entry['dtype']}{entry['shape']}, expected {dtype}{shape}")
        if begin != covered:
            fail(f"{path}: tensor '{name}' begins at {begin}, expected {covered} (packed)")
        if begin % DTYPES[dtype][1] != 0:
            fail(f"{path}: tensor '{name}' at byte {begin} is not aligned to {DTYPES[dtype][1]}")
        expected_bytes = encode(dtype, shape, values)
        if data[begin:end] != expected_bytes:
            got = np.frombuffer(data[begin:end], DTYPES[dtype][0])
            fail(f"{path}: tensor '{name}' holds {got.tolist()}, expected {values}")
        covered = end
    if covered != len(data):
        fail(f"{path}: tensors cover {covered} of {len(data)} data bytes")
    print(f"ok: {path}: {len(header)} tensors, metadata as expected")


def main(argv):
    if len(argv) >= 2 and argv[1] == "check" and len(argv) == 3:
        check(argv[2])
    elif len(argv) >= 2 and argv[1] == "write":
        write_fixtures(argv[2] if len(argv) > 2 else os.path.join(ROOT, "tests", "data", "safetensors"))
    elif len(argv) >= 2 and argv[1] == "corpus":
        write_corpus(argv[2] if len(argv) > 2 else os.path.join(ROOT, "fuzz", "corpus", "safetensors"))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
