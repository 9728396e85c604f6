#!/usr/bin/env python3
"""Convert LPIPS (VGG variant, lpips package v0.1) to the safetensors file `seqgan evaluate lpips`
and `seqgan evaluate tokenizer` load (eval.lpips_weights).

    python3 tools/convert_lpips.py vgg16-397923af.pth vgg.pth lpips.safetensors

Inputs (obtain them yourself, nothing is downloaded here): torchvision's VGG16 state dict (the
ImageNet weights LPIPS was trained on top of) and the lpips package's linear layers for VGG,
version 0.1 (lpips/weights/v0.1/vgg.pth: lin0.model.1.weight [1, 64, 1, 1] ... lin4.model.1.weight
[1, 512, 1, 1]). The output holds the 13 convolutions as features.N.weight/bias and the five
layers as lin0.weight ... lin4.weight, with __metadata__ kind "lpips-vgg". Every tensor is
checked for presence and shape; the classifier of the VGG state dict is left out.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_vgg16 import check_state_dict  # noqa: E402
from weights_io import check_shapes, load_state, write_safetensors  # noqa: E402

LIN_CHANNELS = (64, 128, 256, 512, 512)


def convert(vgg_src, lin_src, dst):
    import torch

    vgg = load_state(vgg_src)
    check_state_dict(vgg, vgg_src)
    lin = load_state(lin_src)
    check_shapes(lin, {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(LIN_CHANNELS)}, lin_src,
                 "the lpips package's VGG linear layers (v0.1)", "pass lpips/weights/v0.1/vgg.pth")
    tensors = {k: v.detach().to(torch.float32) for k, v in vgg.items() if k.startswith("features.")}
    for i in range(len(LIN_CHANNELS)):
        tensors[f"lin{i}.weight"] = lin[f"lin{i}.model.1.weight"].detach().to(torch.float32)
    metadata = {"format": "seqgan", "format_version": "1", "kind": "lpips-vgg", "config": "{}", "step": "0",
                "source": f"{os.path.basename(vgg_src)} + {os.path.basename(lin_src)}"}
    write_safetensors(dst, tensors, metadata)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vgg16", help="torchvision VGG16 state dict (.pth)")
    parser.add_argument("lin", help="the lpips package's v0.1 vgg.pth")
    parser.add_argument("output", help="safetensors file to write")
    args = parser.parse_args()
    try:
        convert(args.vgg16, args.lin, args.output)
    except (ValueError, OSError) as e:
        print(f"convert_lpips: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
