#!/usr/bin/env python3
"""Convert pytorch-fid's InceptionV3 weights to the safetensors file seqgan's FID/IS network loads.

    python3 tools/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors

The input is the state dict pytorch-fid loads into its FID InceptionV3 (the TensorFlow FID graph
ported to torchvision's Inception3 layout: 1008 classes, no auxiliary head); obtain it yourself,
nothing is downloaded here. Every tensor of that layout must be present with its shape and nothing
else; a torchvision ImageNet Inception3 (1000 classes, AuxLogits) is refused with the list of
differences. BatchNorm's num_batches_tracked counters are added when the file lacks them (they
do not affect evaluation).

The output carries __metadata__ {format: seqgan, format_version: 1, kind: inception}. Use it as
eval.feature_weights with eval.feature_network=inception.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import check_shapes, converter_main, load_state, write_safetensors  # noqa: E402

NUM_CLASSES = 1008


def inception_shapes():
    """{name: shape} of the FID InceptionV3's state dict (torchvision Inception3 names)."""
    import torchvision

    model = torchvision.models.inception.Inception3(num_classes=NUM_CLASSES, aux_logits=False, init_weights=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert(src, dst):
    import torch

    state = load_state(src)
    expected = inception_shapes()
    for name in expected:
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = torch.zeros((), dtype=torch.int64)
    check_shapes(state, expected, src, "pytorch-fid's InceptionV3 (1008 classes, no auxiliary head)",
                 "pass pt_inception-2015-12-05-6726825d.pth, the weights pytorch-fid's FID network loads")
    tensors = {k: (v.detach().to(torch.int64) if k.endswith("num_batches_tracked") else v.detach().to(torch.float32))
               for k, v in state.items()}
    metadata = {"format": "seqgan", "format_version": "1", "kind": "inception", "config": "{}", "step": "0",
                "source": os.path.basename(src)}
    write_safetensors(dst, tensors, metadata)


if __name__ == "__main__":
    sys.exit(converter_main("convert_inception", __doc__, "pytorch-fid InceptionV3 state dict (.pth)", convert))
