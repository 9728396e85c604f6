#!/usr/bin/env python3
"""A small MaskGIT VQGAN in open-muse's layout, and what it computes, for the converter's test.

    /usr/bin/python3 tools/maskgit_fixtures.py OUTDIR

tools/convert_maskgit_vqgan.py turns open-muse's MaskGitVQGAN into a seqgan tokenizer. Its test
converts the model written here and checks that seqgan's codes and decoded images are the ones
computed below by a second, independent implementation of MaskGitVQGAN: plain functions on the
state dict, with its names, written from the structure of open-muse's modules (Conv2dSame,
ResnetBlock with the 1x1 shortcut on the block's output, average-pool downsampling, nearest
upsampling then a convolution, GroupNorm(32, eps 1e-6) and SiLU, Euclidean nearest code) and
from its documented input range (ToTensor's [0, 1]) and output range ([0, 1]). Nothing here
shares code with seqgan or with its Python reference.

The model is MaskGitVQGAN(resolution=64, num_channels=3, hidden_channels=32,
channel_mult=(1, 2, 2, 4), num_res_blocks=2, z_channels=32, num_embeddings=64,
quantized_embed_dim=32): the published ImageNet model's structure (widths that change within
a level and that stay, shortcuts in encoder and decoder, two blocks per level and in the middle)
at f = 8, so 64x64 images give 8x8 codes. Its weights are random, every bias and GroupNorm
affine included, so a tensor that fails to load shows. The codebook is drawn around encoder
outputs of other images, so that the test images use many codes, and adjusted until every
position's nearest code beats the second nearest by a clear margin (MARGIN of the mean |z|^2,
some 50x the distance error float rounding on the C++ side could make): no code can flip.

Writes into OUTDIR:
  muse/pytorch_model.bin          the state dict, torch.save (open-muse's WEIGHTS_NAME)
  muse/pytorch_model.safetensors  the same tensors as safetensors
  muse/config.json                the constructor arguments, as open-muse's save_pretrained
  images/img0.png ... img5.png    8-bit test images: four RGB 64x64, one grey 64x64, one RGB
                                  96x80 (resized and centre-cropped like the others would be)
  expected.safetensors            for the images in file-name order (N = 6):
                                    pixels   U8  [N, 64, 64, 3]  the encoder's input as 8-bit
                                             levels, after open-muse's example transform
                                             (convert RGB, Resize(64, bilinear), CenterCrop(64))
                                    latents  F32 [N, 32, 8, 8]   the encoder's output
                                    codes    I64 [N, 8, 8]       encode(ToTensor(image))[1] as a grid
                                    decoded  F32 [N, 3, 64, 64]  decode_code(codes), mapped from
                                             open-muse's [0, 1] to seqgan's [-1, 1] (2 y - 1)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402

CONFIG = {"resolution": 64, "num_channels": 3, "hidden_channels": 32, "channel_mult": [1, 2, 2, 4],
          "num_res_blocks": 2, "attn_resolutions": [], "z_channels": 32, "num_embeddings": 64,
          "quantized_embed_dim": 32, "dropout": 0.0, "resample_with_conv": True, "commitment_cost": 0.25}
GROUPS, EPS = 32, 1e-6
MARGIN = 5e-3


# ----- the state dict, laid out as open-muse's modules name their parameters ------------------

def random_state(cfg, gen):
    sd = {}

    def conv(name, cout, cin, k, bias):
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen) / float(np.sqrt(cin * k * k))
        if bias:
            sd[f"{name}.bias"] = 0.1 * torch.randn(cout, generator=gen)

    def norm(name, c):
        sd[f"{name}.weight"] = 1.0 + 0.2 * torch.randn(c, generator=gen)
        sd[f"{name}.bias"] = 0.2 * torch.randn(c, generator=gen)

    def resnet_block(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cout, cin, 3, False)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3, False)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cout, 1, False)

    hidden, mult, n = cfg["hidden_channels"], cfg["channel_mult"], cfg["num_res_blocks"]
    levels = len(mult)
    conv("encoder.conv_in", hidden, cfg["num_channels"], 3, False)
    in_mult = [1] + mult
    for i in range(levels):  # DownsamplingBlock(i)
        block_in, block_out = hidden * in_mult[i], hidden * mult[i]
        for j in range(n):
            resnet_block(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
    mid = hidden * mult[-1]
    for j in range(n):
        resnet_block(f"encoder.mid.{j}", mid, mid)
    norm("encoder.norm_out", mid)
    conv("encoder.conv_out", cfg["z_channels"], mid, 1, True)

    conv("decoder.conv_in", hidden * mult[levels - 1], cfg["z_channels"], 3, True)
    for j in range(n):
        resnet_block(f"decoder.mid.{j}", mid, mid)
    for i in range(levels):  # UpsamplingBlock(i)
        block_in = hidden * (mult[-1] if i == levels - 1 else mult[i + 1])
        block_out = hidden * mult[i]
        for j in range(n):
            resnet_block(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            conv(f"decoder.up.{i}.upsample_conv", block_out, block_out, 3, True)
    norm("decoder.norm_out", hidden * mult[0])
    conv("decoder.conv_out", cfg["num_channels"], hidden * mult[0], 3, True)
    sd["quantize.embedding.weight"] = torch.zeros(cfg["num_embeddings"], cfg["quantized_embed_dim"])
    return sd


# ----- MaskGitVQGAN's forward computation on that state dict -----------------------------------

def conv_same(x, sd, name):
    """TF-style 'same' convolution, stride 1: k - 1 padding split floor before, ceil after."""
    w = sd[f"{name}.weight"]
    kh, kw = w.shape[-2:]
    ph, pw = kh - 1, kw - 1
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, w, sd.get(f"{name}.bias"))


def norm_silu(x, sd, name):
    return F.silu(F.group_norm(x, GROUPS, sd[f"{name}.weight"], sd[f"{name}.bias"], EPS))


def resnet_block(x, sd, name):
    h = conv_same(norm_silu(x, sd, f"{name}.norm1"), sd, f"{name}.conv1")
    h = conv_same(norm_silu(h, sd, f"{name}.norm2"), sd, f"{name}.conv2")
    if f"{name}.nin_shortcut.weight" in sd:
        return h + conv_same(h, sd, f"{name}.nin_shortcut")  # the shortcut reads the output
    return x + h


def encoder(pixels, sd, cfg):
    """pixels [B, C, H, W] in [0, 1] -> latents [B, z, H/f, W/f]"""
    levels, n = len(cfg["channel_mult"]), cfg["num_res_blocks"]
    h = conv_same(pixels, sd, "encoder.conv_in")
    for i in range(levels):
        for j in range(n):
            h = resnet_block(h, sd, f"encoder.down.{i}.block.{j}")
        if i != levels - 1:
            h = F.avg_pool2d(h, kernel_size=2, stride=2)
    for j in range(n):
        h = resnet_block(h, sd, f"encoder.mid.{j}")
    return conv_same(norm_silu(h, sd, "encoder.norm_out"), sd, "encoder.conv_out")


def decoder(z, sd, cfg):
    """quantised latents [B, z, h, w] -> images [B, C, h f, w f], [0, 1] the image range"""
    levels, n = len(cfg["channel_mult"]), cfg["num_res_blocks"]
    h = conv_same(z, sd, "decoder.conv_in")
    for j in range(n):
        h = resnet_block(h, sd, f"decoder.mid.{j}")
    for i in reversed(range(levels)):
        for j in range(n):
            h = resnet_block(h, sd, f"decoder.up.{i}.block.{j}")
        if i != 0:
            h = conv_same(F.interpolate(h, scale_factor=2.0, mode="nearest"), sd, f"decoder.up.{i}.upsample_conv")
    return conv_same(norm_silu(h, sd, "decoder.norm_out"), sd, "decoder.conv_out")


def nearest_codes(latents, codebook):
    """(codes [B, h, w], relative margins [B, h, w]): the code at the least squared Euclidean
    distance (float64, exact for float32 inputs up to the last bits), and the gap to the second
    nearest as a share of the mean |z|^2."""
    B, D, h, w = latents.shape
    z = latents.permute(0, 2, 3, 1).reshape(-1, D).double()
    d = ((z[:, None, :] - codebook.double()[None, :, :]) ** 2).sum(-1)
    two = d.topk(2, dim=1, largest=False)
    gap = (two.values[:, 1] - two.values[:, 0]) / z.pow(2).sum(1).mean()
    return two.indices[:, 0].reshape(B, h, w), gap.reshape(B, h, w)


def lookup(codes, codebook):
    return codebook[codes].permute(0, 3, 1, 2).contiguous()


# ----- images ---------------------------------------------------------------------------------

def test_images(rng):
    """(file name, PIL image) pairs: smooth patterns with edges and noise, so that codes vary."""
    out = []
    for k in range(4):
        y, x = np.mgrid[0:64, 0:64].astype(np.float32)
        a = np.stack([128 + 110 * np.sin(x / (5 + 3 * k) + k), 128 + 110 * np.cos(y / (7 + 2 * k) - k),
                      128 + 90 * np.sin((x - y) / (9 + k))], -1)
        a[(x - 20 - 4 * k) ** 2 + (y - 30) ** 2 < (10 + 3 * k) ** 2] = [230 - 40 * k, 40 + 50 * k, 90]
        a += rng.normal(0, 12, a.shape)
        out.append((f"img{k}.png", Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "RGB")))
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    g = 128 + 100 * np.sin(x / 6.0) * np.cos(y / 9.0) + rng.normal(0, 10, x.shape)
    out.append(("img4.png", Image.fromarray(np.clip(g, 0, 255).round().astype(np.uint8), "L")))
    y, x = np.mgrid[0:80, 0:96].astype(np.float32)
    a = np.stack([x * 2.5, y * 3.0, 255 - x * 1.2 - y], -1) + rng.normal(0, 15, (80, 96, 3))
    a[20:60, 30:70] = [40, 200, 120]
    out.append(("img5.png", Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "RGB")))
    return out


def prepare(path, resolution):
    """open-muse's example transform: RGB, Resize(res, bilinear), CenterCrop(res); the 8-bit
    levels [res, res, 3] and ToTensor's [3, res, res] in [0, 1]."""
    from torchvision import transforms

    img = Image.open(path).convert("RGB")
    img = transforms.CenterCrop(resolution)(
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR)(img))
    return np.asarray(img).copy(), transforms.ToTensor()(img)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    cfg = CONFIG
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20240731)
    sd = random_state(cfg, gen)

    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    names = []
    for name, img in test_images(np.random.RandomState(5)):
        img.save(os.path.join(out, "images", name))
        names.append(name)
    pixels, x = zip(*(prepare(os.path.join(out, "images", n), cfg["resolution"]) for n in names))
    x = torch.stack(x)

    sd64 = {k: v.double() for k, v in sd.items()}
    with torch.no_grad():
        # The reference is computed in float64: float32 loses about 1e-4 of the latents' scale
        # here (GroupNorm of [0, 1] inputs, whose mean dwarfs their spread), as seqgan may too.
        latents = encoder(x.double(), sd64, cfg)
        # The codebook: encoder outputs of other images (noise and blurred noise) plus a little
        # noise. A position whose nearest code is not clearly nearest pulls that code a quarter
        # of the way towards itself, until every margin is at least MARGIN.
        pool_images = torch.rand(8, 3, 64, 64, generator=gen)
        pool_images[4:] = F.avg_pool2d(pool_images[4:], 5, 1, 2)
        pool = torch.cat([encoder(pool_images, sd, cfg), latents[:2].float()])
        pool = pool.permute(0, 2, 3, 1).reshape(-1, cfg["z_channels"])
        pick = torch.randperm(pool.shape[0], generator=gen)[:cfg["num_embeddings"]]
        spread = pool.std(0).mean().item()
        codebook = pool[pick] + 0.15 * spread * torch.randn(cfg["num_embeddings"], cfg["z_channels"], generator=gen)
        z = latents.float().permute(0, 2, 3, 1).reshape(-1, cfg["z_channels"])
        for rounds in range(1000):
            codes, margin = nearest_codes(latents, codebook)
            close = (margin.flatten() < MARGIN).nonzero().flatten().tolist()
            if not close:
                break
            for p in close:
                k = codes.flatten()[p]
                codebook[k] += 0.25 * (z[p] - codebook[k])
        else:
            raise SystemExit(f"codebook: some margins stay below {MARGIN} after 1000 rounds; lower MARGIN")
        sd["quantize.embedding.weight"] = codebook.contiguous()
        sd64["quantize.embedding.weight"] = codebook.double()
        decoded = decoder(lookup(codes, sd64["quantize.embedding.weight"]), sd64, cfg)
        # The same in float32, as a C++ run computes it: the codes must not move.
        latents32 = encoder(x, sd, cfg)
        codes32, _ = nearest_codes(latents32, codebook)
        decoded32 = decoder(lookup(codes, codebook), sd, cfg)
        if not torch.equal(codes32, codes):
            raise SystemExit("float32 changes a code: raise MARGIN")

    muse = os.path.join(out, "muse")
    os.makedirs(muse, exist_ok=True)
    torch.save(sd, os.path.join(muse, "pytorch_model.bin"))
    write_safetensors(os.path.join(muse, "pytorch_model.safetensors"), sd, {"format": "pt"})
    with open(os.path.join(muse, "config.json"), "w") as f:
        json.dump({"_class_name": "MaskGitVQGAN", "_version": "0.0.1", **cfg}, f, indent=2, sort_keys=True)
    write_safetensors(os.path.join(out, "expected.safetensors"), {
        "pixels": np.stack(pixels).astype(np.uint8),
        "latents": latents.float(),
        "codes": codes.to(torch.int64),
        "decoded": (2.0 * decoded - 1.0).float(),
    })
    print(f"{len(names)} images, {codes.unique().numel()} of {cfg['num_embeddings']} codes used, least margin "
          f"{margin.min().item():.2e} of the mean |z|^2 ({rounds} rounds of corrections); float32 vs float64: "
          f"latents {(latents32 - latents).abs().max().item():.1e} (max |z| {latents.abs().max().item():.2f}), "
          f"decoded {(2 * (decoded32 - decoded)).abs().max().item():.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
