#!/usr/bin/env python3
"""Reference outputs of the FID InceptionV3 for the C++ parity test (tests/test_inception.cpp).

    /usr/bin/python3 tools/inception_fixtures.py OUTDIR

The reference is torchvision's Inception3 (1008 classes, no auxiliary head, random weights from a
fixed seed (He-initialised convolutions, so activations stay O(1)); batch-norm statistics and affine terms randomised too, so none of them can silently
fail to load), with the blocks replaced by subclasses that make pytorch-fid's four changes:
average pools that do not count padding in Mixed_5b..5d, Mixed_6b..6e and Mixed_7b, and a 3x3
max pool in Mixed_7c's pool branch. The input is resized bilinearly to 299 (align_corners=False).

Writes into OUTDIR:
  inception.safetensors  the state dict, through tools/convert_inception.py (tests the converter);
  expected.safetensors   per case <case>.input, <case>.features [B, 2048], <case>.logit [B, 1008],
                         <case>.spatial [B, 2023] (sFID's tap: Mixed_6d.branch1x1's first 7 channels,
                         17x17, flattened channels-last), and <case>.adm_features: the pool features
                         when the input is brought to 299 as ADM's TensorFlow graph does it (TF1
                         legacy bilinear: output o samples input o * in / out; pixels (u - 128) / 128):
                           rgb64x80  [2, 3, 64, 80]  (resized up, non-square)
                           grey32    [2, 1, 32, 32]  (grey repeated to three channels)
                           rgb299    [1, 3, 299, 299] (no resize)
"""
import os
import sys

import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_inception import NUM_CLASSES, convert  # noqa: E402
from weights_io import write_safetensors  # noqa: E402


def avg_pool_without_padding(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FidA(tvi.InceptionA):
    def _forward(self, x):
        out = super()._forward(x)
        out[3] = self.branch_pool(avg_pool_without_padding(x))
        return out


class FidC(tvi.InceptionC):
    def _forward(self, x):
        out = super()._forward(x)
        out[3] = self.branch_pool(avg_pool_without_padding(x))
        return out


class FidE(tvi.InceptionE):
    def __init__(self, in_channels, max_pool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        out = super()._forward(x)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else avg_pool_without_padding(x)
        out[3] = self.branch_pool(pooled)
        return out


def fid_inception(seed=0):
    torch.manual_seed(seed)
    model = tvi.Inception3(num_classes=NUM_CLASSES, aux_logits=False, init_weights=True)
    swaps = {"Mixed_5b": FidA(192, 32), "Mixed_5c": FidA(256, 64), "Mixed_5d": FidA(288, 64),
             "Mixed_6b": FidC(768, 128), "Mixed_6c": FidC(768, 160), "Mixed_6d": FidC(768, 160),
             "Mixed_6e": FidC(768, 192), "Mixed_7b": FidE(1280, False), "Mixed_7c": FidE(2048, True)}
    for name, block in swaps.items():
        block.load_state_dict(getattr(model, name).state_dict())
        setattr(model, name, block)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):  # He initialisation keeps activations O(1) through 94 layers
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
        model.fc.bias.uniform_(-0.1, 0.1)
    return model.eval()


def tf1_resize(x, size):
    """TensorFlow 1's resize_bilinear(align_corners=False) without half-pixel centres, by gathers."""
    def axis(n_in):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        top = src.floor().long().clamp(max=n_in - 1)
        bottom = (top + 1).clamp(max=n_in - 1)
        return top, bottom, (src - top.double()).float()
    t, b, ly = axis(x.shape[2])
    left, right, lx = axis(x.shape[3])
    rows = x[:, :, t] * (1 - ly)[:, None] + x[:, :, b] * ly[:, None]
    return rows[..., left] * (1 - lx) + rows[..., right] * lx


def features_and_logits(model, x, adm=False):
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if adm:
        u = (x + 1) * 127.5
        if x.shape[2:] != (299, 299):
            u = tf1_resize(u, 299)
        x = (u - 128) / 128
    elif x.shape[2:] != (299, 299):
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    m = model
    spatial = []
    hook = m.Mixed_6d.branch1x1.register_forward_hook(
        lambda mod, inp, out: spatial.append(out[:, :7].permute(0, 2, 3, 1).reshape(out.shape[0], -1)))
    for layer in (m.Conv2d_1a_3x3, m.Conv2d_2a_3x3, m.Conv2d_2b_3x3, m.maxpool1, m.Conv2d_3b_1x1, m.Conv2d_4a_3x3,
                  m.maxpool2, m.Mixed_5b, m.Mixed_5c, m.Mixed_5d, m.Mixed_6a, m.Mixed_6b, m.Mixed_6c, m.Mixed_6d,
                  m.Mixed_6e, m.Mixed_7a, m.Mixed_7b, m.Mixed_7c):
        x = layer(x)
    hook.remove()
    pooled = m.avgpool(x).flatten(1)
    return pooled, m.fc(pooled), spatial[0]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model = fid_inception()
    pth = os.path.join(out, "inception.pth")
    torch.save(model.state_dict(), pth)
    convert(pth, os.path.join(out, "inception.safetensors"))
    os.remove(pth)
    gen = torch.Generator().manual_seed(1)
    cases = {"rgb64x80": (2, 3, 64, 80), "grey32": (2, 1, 32, 32), "rgb299": (1, 3, 299, 299)}
    expected = {}
    with torch.no_grad():
        for case, shape in cases.items():
            x = torch.rand(shape, generator=gen) * 2 - 1
            f, logit, spatial = features_and_logits(model, x)
            expected[f"{case}.input"] = x
            expected[f"{case}.features"] = f
            expected[f"{case}.logit"] = logit
            expected[f"{case}.spatial"] = spatial
            expected[f"{case}.adm_features"] = features_and_logits(model, x, adm=True)[0]
    write_safetensors(os.path.join(out, "expected.safetensors"), expected)


if __name__ == "__main__":
    main()
