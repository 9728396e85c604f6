#!/usr/bin/env python3
"""Reference LPIPS distances for the C++ comparison (tests/test_adm_metrics.cpp), from a PyTorch
LPIPS written here from the paper and the lpips package's documented v0.1 computation, with
random weights (nothing is downloaded):

  VGG: torchvision.models.vgg16() with a fixed seed; the input (in [-1, 1]) shifted by
       (-0.030, -0.088, -0.188) and divided by (0.458, 0.448, 0.450) per channel;
  taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; each normalised over channels,
       f / (sqrt(sum f^2) + 1e-10); squared difference; a 1x1 convolution without bias (the
       random non-negative "linear layer"); mean over positions; the sum over the five taps.

    /usr/bin/python3 tools/lpips_fixtures.py OUTDIR

Writes OUTDIR/lpips.safetensors through tools/convert_lpips.py (which it thereby tests) and
OUTDIR/expected.safetensors: rgb.x, rgb.y [3, 3, 40, 48] and grey.x, grey.y [2, 1, 32, 32] in
[-1, 1], rgb.d [3] and grey.d [2] (grey is repeated to three channels), and same.d [3] (x with
itself: 0).
"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_lpips import LIN_CHANNELS, convert  # noqa: E402
from weights_io import write_safetensors  # noqa: E402

TAPS = (3, 8, 15, 22, 29)


def lpips(vgg, lin, x, y):
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(t):
        if t.shape[1] == 1:
            t = t.repeat(1, 3, 1, 1)
        h, out = (t - shift) / scale, []
        for i, layer in enumerate(vgg.features):
            h = layer(h)
            if i in TAPS:
                out.append(h)
            if i == TAPS[-1]:
                break
        return out

    total = 0
    for w, a, b in zip(lin, taps(x), taps(y)):
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + torch.nn.functional.conv2d((na - nb) ** 2, w).mean((1, 2, 3))
    return total


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(3)
    vgg = torchvision.models.vgg16().eval()
    for m in vgg.features:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    lin = [torch.rand(1, c, 1, 1) * 0.2 for c in LIN_CHANNELS]
    vgg_pth, lin_pth = os.path.join(out, "vgg16.pth"), os.path.join(out, "vgg.pth")
    torch.save(vgg.state_dict(), vgg_pth)
    torch.save({f"lin{i}.model.1.weight": w for i, w in enumerate(lin)}, lin_pth)
    convert(vgg_pth, lin_pth, os.path.join(out, "lpips.safetensors"))
    os.remove(vgg_pth)
    os.remove(lin_pth)
    gen = torch.Generator().manual_seed(5)
    t = {}
    with torch.no_grad():
        for case, shape in (("rgb", (3, 3, 40, 48)), ("grey", (2, 1, 32, 32))):
            x = torch.rand(shape, generator=gen) * 2 - 1
            y = (x + torch.randn(shape, generator=gen) * 0.3).clamp(-1, 1)
            t[f"{case}.x"], t[f"{case}.y"], t[f"{case}.d"] = x, y, lpips(vgg, lin, x, y)
        t["same.d"] = lpips(vgg, lin, t["rgb.x"], t["rgb.x"])
    write_safetensors(os.path.join(out, "expected.safetensors"), t)


if __name__ == "__main__":
    main()
