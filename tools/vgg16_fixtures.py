#!/usr/bin/env python3
"""Reference outputs of torchvision's VGG16 for the C++ parity test (tests/test_vgg16.cpp).

    /usr/bin/python3 tools/vgg16_fixtures.py OUTDIR

Writes into OUTDIR:
  vgg16.safetensors     the full state dict of torchvision.models.vgg16(weights=None) after a fixed
                        seed, with the biases set to random values too (torchvision starts them
                        at zero, which would hide a bias that fails to load); it is produced by
                        tools/convert_vgg16.py from a .pth, so the converter is tested as well.
                        About 550 MB: the test generates it into a cache, it is never committed.
  expected.safetensors  per case <case>.input and <case>.<tap> for the taps relu1_2 ... relu5_3 and
                        logit, computed by torchvision's modules:
                          rgb256     [1, 3, 256, 256]  (8x8 -> 7x7 adaptive pooling: overlapping bins)
                          rgb100x76  [2, 3, 100, 76]   (3x2 -> 7x7: repeated bins, non-square)
                          grey64     [1, 1, 64, 64]    (grey input repeated to 3 channels)
                        and the perceptual loss terms of seqgan's definition (paper Eq. 3) for a
                        pair loss.x, loss.y [2, 3, 64, 64]: loss.mse [6], one per tap in the order
                        above (1/(HWC) |x - y|^2, batch mean), and loss.mse_lpips [5], the five
                        ReLU taps with each position's channel vector f divided by sqrt(|f|^2 + 1e-10)
                        first.
Inputs are uniform in [-1, 1] and mapped to ImageNet mean/std exactly as the C++ code does.
"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_vgg16 import convert, write_safetensors  # noqa: E402

TAPS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
TAP_INDICES = [3, 8, 15, 22, 29]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def preprocess(x):
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return ((x + 1) * 0.5 - MEAN) / STD


def all_taps(model, x):
    out = {}
    h = preprocess(x)
    for i, layer in enumerate(model.features):
        h = layer(h)
        if i in TAP_INDICES:
            out[TAPS[TAP_INDICES.index(i)]] = h.clone()  # torchvision's ReLUs are in place
    h = torch.flatten(model.avgpool(h), 1)
    out["logit"] = model.classifier(h)
    return out


def unit_normalize(f, eps=1e-10):
    return f / (f.pow(2).sum(dim=1, keepdim=True) + eps).sqrt()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)

    torch.manual_seed(20240601)
    model = torchvision.models.vgg16(weights=None).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    pth = os.path.join(outdir, "vgg16.pth")
    torch.save(model.state_dict(), pth)
    convert(pth, os.path.join(outdir, "vgg16.safetensors"))
    os.remove(pth)

    expected = {}
    cases = {"rgb256": (1, 3, 256, 256), "rgb100x76": (2, 3, 100, 76), "grey64": (1, 1, 64, 64)}
    with torch.no_grad():
        for case, shape in cases.items():
            x = torch.rand(shape) * 2 - 1
            expected[f"{case}.input"] = x
            for tap, value in all_taps(model, x).items():
                expected[f"{case}.{tap}"] = value

        x = torch.rand(2, 3, 64, 64) * 2 - 1
        y = (x + 0.3 * torch.randn(2, 3, 64, 64)).clamp(-1, 1)
        fx, fy = all_taps(model, x), all_taps(model, y)
        names = TAPS + ["logit"]
        expected["loss.x"], expected["loss.y"] = x, y
        expected["loss.mse"] = torch.stack([(fx[n] - fy[n]).pow(2).mean() for n in names])
        expected["loss.mse_lpips"] = torch.stack(
            [(unit_normalize(fx[n]) - unit_normalize(fy[n])).pow(2).mean() for n in TAPS])

    metadata = {"torch": torch.__version__, "torchvision": torchvision.__version__, "seed": "20240601"}
    write_safetensors(os.path.join(outdir, "expected.safetensors"), expected, metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
