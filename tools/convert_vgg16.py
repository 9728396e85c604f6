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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import check_shapes, converter_main, load_state, write_safetensors  # noqa: E402,F401

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


def check_state_dict(state, source):
    """Raises ValueError listing every missing, unexpected or misshapen tensor."""
    check_shapes(state, vgg16_shapes(), source, "torchvision's VGG16",
                 "pass the state dict of torchvision.models.vgg16 (not vgg16_bn or vgg19)")


def convert(src, dst):
    import torch

    state = load_state(src)
    check_state_dict(state, src)
    tensors = {k: v.detach().to(torch.float32) for k, v in state.items()}
    metadata = {"format": "seqgan", "format_version": "1", "kind": "vgg16", "config": "{}", "step": "0",
                "source": os.path.basename(src)}
    write_safetensors(dst, tensors, metadata)


if __name__ == "__main__":
    sys.exit(converter_main("convert_vgg16", __doc__, "torchvision VGG16 state dict (.pth)", convert))
