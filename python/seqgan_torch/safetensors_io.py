"""Reading safetensors files into torch tensors without the `safetensors` package: an 8-byte
little-endian header length, a JSON header (tensor name -> dtype, shape, byte range; and
"__metadata__", a map of strings), then the raw little-endian data. seqgan records a CRC-32 of
each tensor's bytes under the metadata key "seqgan.crc32"; it is checked here as seqgan checks it."""
import json
import os
import struct
import sys
import zlib

import torch

CHECKSUM_KEY = "seqgan.crc32"

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
           "U8": torch.uint8, "BOOL": torch.bool}


def _element_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


def read_safetensors(path):
    """({name: tensor}, {metadata}) of a safetensors file: CPU tensors of the file's dtypes, and the
    metadata without seqgan's checksum entry, which is verified. Raises ValueError naming the file
    and the problem when it is not a well-formed safetensors file or a checksum differs."""
    if sys.byteorder != "little":
        raise ValueError("safetensors data is little-endian; this reader runs on little-endian machines only")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = bytearray(size)
            if f.readinto(data) != size:
                raise ValueError(f"{path}: the file changed while it was read")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror}); check the path") from None
    if size < 8:
        raise ValueError(f"{path}: too short for a safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > size - 8:
        raise ValueError(f"{path}: the header length {n} exceeds the file ({size} bytes); the file is damaged or "
                         "not safetensors")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the header is not JSON ({e}); the file is damaged or not safetensors") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object; the file is damaged or not safetensors")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: __metadata__ is not a map of strings; the file is damaged or not safetensors")
    base, end_of_data = 8 + n, size - 8 - n
    tensors = {}
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
            if any(s < 0 for s in shape):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor '{name}' has a malformed header entry {info!r} "
                             f"(dtypes read here: {', '.join(_DTYPES)})") from None
        count = 1
        for s in shape:
            count *= s
        itemsize = _element_size(dtype)
        if not 0 <= begin <= end <= end_of_data or end - begin != count * itemsize:
            raise ValueError(f"{path}: tensor '{name}' ({info['dtype']} {shape}) has byte range [{begin}, {end}), "
                             f"which does not fit it or the file; the file is damaged")
        offset = base + begin
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        elif offset % itemsize:  # unaligned: copy the bytes out first
            t = torch.frombuffer(bytearray(data[offset:base + end]), dtype=dtype).reshape(shape)
        else:
            t = torch.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        tensors[name] = t
    if CHECKSUM_KEY in metadata:
        try:
            sums = json.loads(metadata.pop(CHECKSUM_KEY))
        except json.JSONDecodeError:
            sums = None
        if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
            raise ValueError(f"{path}: '{CHECKSUM_KEY}' in the metadata is not a map of tensor names to CRC-32s; the "
                             "file is damaged")
        _verify(path, data, base, header, sums)
    return tensors, metadata


def _verify(path, data, base, header, sums):
    bad = []
    for name, want in sums.items():
        if name not in header:
            bad.append(f"'{name}' has a checksum but no tensor")
            continue
        begin, end = header[name]["data_offsets"]
        got = "%08x" % zlib.crc32(memoryview(data)[base + begin:base + end])
        if got != want:
            bad.append(f"'{name}': CRC-32 {got}, recorded {want}")
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) fail seqgan's checksum ({'; '.join(bad[:5])}); the file is "
                         "damaged: restore it or write it again (`seqgan inspect --verify FILE` checks it)")
