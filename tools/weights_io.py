"""Shared by the weight converters and fixture scripts: reading a PyTorch state dict, checking it
against the expected tensor names and shapes, and writing safetensors without the `safetensors`
package (the format is simple: an 8-byte little-endian header length, a JSON header, the raw
little-endian data)."""
import json
import os
import struct
import zlib

import numpy as np

_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
           np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array-like} as safetensors, atomically (temporary file + rename), creating
    the folder. Like every file seqgan writes, the metadata holds "seqgan.crc32": zlib's CRC-32 of
    each tensor's bytes, which seqgan checks on load."""
    arrays = {}
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        if a.dtype not in _DTYPES:
            raise ValueError(f"tensor '{name}': dtype {a.dtype} has no safetensors name here")
        arrays[name] = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    header, offset = {}, 0
    # Wider dtypes first keeps every tensor aligned to its element size without gaps.
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta["seqgan.crc32"] = json.dumps({n: "%08x" % zlib.crc32(arrays[n].tobytes()) for n in order},
                                      separators=(",", ":"), sort_keys=True)
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writes it
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in order:
                f.write(arrays[name].tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise



def load_state(src):
    """The state dict (name -> tensor) in a file written by torch.save: a plain state dict, a module,
    or a dict holding one under "state_dict"; a "module." prefix (DataParallel) is removed."""
    import torch

    state = torch.load(src, map_location="cpu")
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{src}: expected a state dict (name -> tensor), found {type(state).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def check_shapes(state, expected, source, what, hint):
    """Raises ValueError listing every missing, unexpected or misshapen tensor of `state` against
    expected {name: shape}."""
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"missing tensor '{name}' {list(shape)}")
        elif tuple(state[name].shape) != tuple(shape):
            problems.append(f"tensor '{name}' has wrong shape; expected {list(shape)}, got {list(state[name].shape)}")
    for name in state:
        if name not in expected:
            problems.append(f"unexpected tensor '{name}' {list(state[name].shape)}")
    if problems:
        raise ValueError(f"{source}: not {what} ({len(problems)} difference(s)):\n  " + "\n  ".join(problems)
                         + f"\n---> HINT: {hint}")


def converter_main(name, doc, input_help, convert):
    """The command line every converter has: INPUT OUTPUT, errors as one line and exit status 1."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help=input_help)
    parser.add_argument("output", help="safetensors file to write")
    args = parser.parse_args()
    try:
        convert(args.input, args.output)
    except (ValueError, OSError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0
