#!/usr/bin/env python3
"""Convert torchvision's VGG16 weights to the safetensors file seqgan's perceptual loss loads.

    python3 tools/convert_vgg16.py vgg16-397923af.pth vgg16.safetensors

The input is a state dict saved with torch.save, e.g. torchvision's released
vgg16-397923af.pth (ImageNet weights; obtain it yourself, nothing is downloaded here). Every
tensor of torchvision's VGG16 must be present with its shape and nothing else: a file for
another model (vgg16_bn, vgg19, a fine-tuned head) is refused with the list of differences.

The output carries __metadata__ {format: seqgan, format_version: 1, kind: vgg16} and is written
without the `safetensors` package (the format is simple: an 8-byte little-endian header length,
a JSON header, the raw little-endian data). Use it as perceptual.weights with
perceptual.network=vgg16.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

# torchvision cfg "D": output channels of each convolution, "M" a max-pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_shapes():
    """{name: shape} of torchvision.models.vgg16().state_dict(), derived from the cfg."""
    shapes = {}
    index, channels = 0, 3
    for v in VGG16_CFG:
        if v == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (v, channels, 3, 3)
        shapes[f"features.{index}.bias"] = (v,)
        index, channels = index + 2, v  # the ReLU after each conv takes an index
    for i, (n_in, n_out) in zip((0, 3, 6), ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000))):
        shapes[f"classifier.{i}.weight"] = (n_out, n_in)
        shapes[f"classifier.{i}.bias"] = (n_out,)
    return shapes


_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
           np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array-like} as safetensors, atomically (temporary file + rename)."""
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
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writes it
    tmp = f"{path}.tmp{os.getpid()}"
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


def check_state_dict(state, source):
    """Raises ValueError listing every missing, unexpected or misshapen tensor."""
    expected = vgg16_shapes()
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"missing tensor '{name}' {list(shape)}")
        elif tuple(state[name].shape) != shape:
            problems.append(f"tensor '{name}' has wrong shape; expected {list(shape)}, got {list(state[name].shape)}")
    for name in state:
        if name not in expected:
            problems.append(f"unexpected tensor '{name}' {list(state[name].shape)}")
    if problems:
        raise ValueError(f"{source}: not torchvision's VGG16 ({len(problems)} difference(s)):\n  " + "\n  ".join(problems)
                         + "\n---> HINT: pass the state dict of torchvision.models.vgg16 (not vgg16_bn or vgg19)")


def convert(src, dst):
    import torch

    state = torch.load(src, map_location="cpu")
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{src}: expected a state dict (name -> tensor), found {type(state).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    check_state_dict(state, src)
    tensors = {k: v.detach().to(torch.float32) for k, v in state.items()}
    metadata = {"format": "seqgan", "format_version": "1", "kind": "vgg16", "config": "{}", "step": "0",
                "source": os.path.basename(src)}
    write_safetensors(dst, tensors, metadata)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="torchvision VGG16 state dict (.pth)")
    parser.add_argument("output", help="safetensors file to write")
    args = parser.parse_args()
    try:
        convert(args.input, args.output)
    except (ValueError, OSError) as e:
        print(f"convert_vgg16: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
