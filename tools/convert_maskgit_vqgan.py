#!/usr/bin/env python3
"""Convert MaskGIT's VQGAN tokenizer, as open-muse publishes it, into a seqgan phase-1 tokenizer.

    python3 tools/convert_maskgit_vqgan.py IN OUT.safetensors [--resolution N]

IN is the state dict of open-muse's `MaskGitVQGAN` (muse/modeling_maskgit_vqgan.py), e.g. the
ImageNet 256 tokenizer openMUSE/maskgit-vqgan-imagenet-f16-256 (obtain it yourself, nothing is
downloaded here): a `pytorch_model.bin` written by torch.save, a `.safetensors` file, or the
folder holding one of them. A `config.json` beside the weights (the folder open-muse's
save_pretrained writes) supplies the training resolution and is checked against the weights;
--resolution overrides it, and without one the resolution is 256. The architecture is read
from the tensor shapes: base width, channel multipliers, residual blocks per level, code width
and codebook size. Every tensor MaskGitVQGAN has must be present with its shape, and nothing else:
a file of another model (taming's VQGAN, a MoVQ, a fine-tune with attention) is refused with
the list of differences.

The two networks compute the same function once three things are accounted for:
  * names: `nin_shortcut` is seqgan's `skip` (both 1x1 convolutions on the block's output),
    `upsample_conv` is `upsample.conv`, `quantize.embedding.weight` is `quantizer.embedding`;
  * output range: MaskGIT's decoder produces images in [0, 1], seqgan's in [-1, 1]. The map
    y -> 2y - 1 is folded into the last convolution (weight x 2, bias x 2 - 1), exactly up to
    float rounding;
  * input range: MaskGIT's encoder reads images in [0, 1] (torchvision's ToTensor), seqgan feeds
    [-1, 1]. This cannot be folded into the first convolution (its zero padding would become
    -1 padding), so the config sets tokenizer.input_range = "0_1" and seqgan's encoder maps
    x -> (x + 1) / 2 before its first convolution.
Codes are the same indices: `seqgan tokenize` and TokenizerModel::encode give, as [h, w], what
open-muse's `encode(pixels)[1]` gives as [h * w] in row-major order, for images prepared the
way open-muse's examples do (Resize with PIL's bilinear filter, CenterCrop, ToTensor), which is
seqgan's evaluation transform with data.preprocess = resize, data.resize_filter = bilinear.

The output is a seqgan tokenizer file (__metadata__ format seqgan, kind tokenizer, phase 1,
step 0, and a config: preset paper with the data, tokenizer and quantizer sections of this
model). Use it wherever a phase-1 tokenizer.safetensors goes: `seqgan tokenize`, `seqgan
reconstruct`, `train-tokenizer --phase 2 --init OUT.safetensors` (with
--set phase2.fresh_discriminator=true: no discriminator comes with it), or the transformers.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from seqgan_torch.safetensors_io import read_safetensors  # noqa: E402
from weights_io import check_shapes, write_safetensors  # noqa: E402

WEIGHT_FILES = ("pytorch_model.safetensors", "model.safetensors", "pytorch_model.bin")
NORM_GROUPS = 32   # MaskGitVQGAN's GroupNorm(num_groups=32, eps=1e-6) everywhere
NORM_EPS = 1e-6
WHAT = "open-muse's MaskGitVQGAN"
HINT = ("pass the state dict of muse.MaskGitVQGAN (e.g. pytorch_model.bin of "
        "openMUSE/maskgit-vqgan-imagenet-f16-256), not of another tokenizer")


def weights_path(src):
    """The weight file of IN: IN itself, or the first of WEIGHT_FILES in the folder IN."""
    if not os.path.isdir(src):
        if not os.path.exists(src):
            raise ValueError(f"{src}: no such file or folder")
        return src
    for name in WEIGHT_FILES:
        p = os.path.join(src, name)
        if os.path.exists(p):
            return p
    raise ValueError(f"{src}: the folder holds none of {', '.join(WEIGHT_FILES)}")


def read_state(path):
    """{name: float32 tensor} of a .safetensors file or of a torch.save'd state dict."""
    import torch

    if path.endswith(".safetensors"):
        tensors, _ = read_safetensors(path)
        state = {k: v.to(torch.float32) for k, v in tensors.items()}
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # a torch without weights_only
            state = torch.load(path, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors alike
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            raise ValueError(f"{path}: torch.load cannot read it as a state dict of tensors "
                             f"({type(e).__name__}: {reason})\n---> HINT: pass the pytorch_model.bin that "
                             "MaskGitVQGAN.save_pretrained writes (a torch.save'd state dict), or its .safetensors")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), found {type(state).__name__}")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        bad = [k for k, v in state.items() if not torch.is_tensor(v)]
        if bad:
            raise ValueError(f"{path}: entries that are not tensors: {', '.join(sorted(bad)[:5])}")
        state = {k: v.detach().to(torch.float32) for k, v in state.items()}
    return state


def read_config(src, weights):
    """open-muse's config.json beside the weights (or in the folder IN), or None."""
    folder = src if os.path.isdir(src) else os.path.dirname(os.path.abspath(weights))
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        return None, path
    with open(path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})")
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name != "MaskGitVQGAN":
        raise ValueError(f"{path}: the config of a {name!r}, not of a MaskGitVQGAN\n"
                         f"---> HINT: {HINT}, or move the config.json away and pass --resolution")
    return config, path


def derive_architecture(state, source):
    """MaskGitVQGAN's constructor arguments as far as the weights determine them."""
    anchors = ["encoder.conv_in.weight", "encoder.down.0.block.0.conv1.weight", "encoder.conv_out.weight",
               "quantize.embedding.weight"]
    missing = [a for a in anchors if a not in state]
    if missing:
        raise ValueError(f"{source}: not {WHAT}: missing " + ", ".join(f"'{m}'" for m in missing)
                         + f" (the file has {len(state)} tensors"
                         + (f", e.g. '{sorted(state)[0]}'" if state else "") + f")\n---> HINT: {HINT}")
    conv_in = state["encoder.conv_in.weight"]
    if conv_in.dim() != 4:
        raise ValueError(f"{source}: not {WHAT}: 'encoder.conv_in.weight' has shape {list(conv_in.shape)}"
                         f"\n---> HINT: {HINT}")
    hidden, channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    levels = 0
    while f"encoder.down.{levels}.block.0.conv1.weight" in state:
        levels += 1
    blocks = 0
    while f"encoder.down.0.block.{blocks}.conv1.weight" in state:
        blocks += 1
    mult = []
    for i in range(levels):
        width = int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0])
        if width % hidden:
            raise ValueError(f"{source}: not {WHAT}: level {i} has {width} channels, not a multiple of the base "
                             f"width {hidden}\n---> HINT: {HINT}")
        mult.append(width // hidden)
    codebook = state["quantize.embedding.weight"]
    z = state["encoder.conv_out.weight"]
    if codebook.dim() != 2 or z.dim() != 4:
        raise ValueError(f"{source}: not {WHAT}: 'quantize.embedding.weight' {list(codebook.shape)}, "
                         f"'encoder.conv_out.weight' {list(z.shape)}\n---> HINT: {HINT}")
    return {"num_channels": channels, "hidden_channels": hidden, "channel_mult": mult, "num_res_blocks": blocks,
            "z_channels": int(z.shape[0]), "num_embeddings": int(codebook.shape[0]),
            "quantized_embed_dim": int(codebook.shape[1])}


def expected_shapes(arch):
    """{name: shape} of MaskGitVQGAN(**arch).state_dict(), from the structure of its modules."""
    shapes = {}
    C, base, mult = arch["num_channels"], arch["hidden_channels"], arch["channel_mult"]
    blocks, z = arch["num_res_blocks"], arch["z_channels"]

    def res_block(prefix, cin, cout):
        shapes[f"{prefix}.norm1.weight"] = shapes[f"{prefix}.norm1.bias"] = (cin,)
        shapes[f"{prefix}.conv1.weight"] = (cout, cin, 3, 3)
        shapes[f"{prefix}.norm2.weight"] = shapes[f"{prefix}.norm2.bias"] = (cout,)
        shapes[f"{prefix}.conv2.weight"] = (cout, cout, 3, 3)
        if cin != cout:  # applied to the block's output, hence out x out
            shapes[f"{prefix}.nin_shortcut.weight"] = (cout, cout, 1, 1)

    shapes["encoder.conv_in.weight"] = (base, C, 3, 3)
    cin = base
    for i, m in enumerate(mult):
        for j in range(blocks):
            res_block(f"encoder.down.{i}.block.{j}", cin, base * m)
            cin = base * m
    for j in range(blocks):
        res_block(f"encoder.mid.{j}", cin, cin)
    shapes["encoder.norm_out.weight"] = shapes["encoder.norm_out.bias"] = (cin,)
    shapes["encoder.conv_out.weight"] = (z, cin, 1, 1)
    shapes["encoder.conv_out.bias"] = (z,)

    width = base * mult[-1]
    shapes["decoder.conv_in.weight"] = (width, z, 3, 3)
    shapes["decoder.conv_in.bias"] = (width,)
    for j in range(blocks):
        res_block(f"decoder.mid.{j}", width, width)
    for i in reversed(range(len(mult))):
        out = base * mult[i]
        for j in range(blocks):
            res_block(f"decoder.up.{i}.block.{j}", width, out)
            width = out
        if i > 0:
            shapes[f"decoder.up.{i}.upsample_conv.weight"] = (out, out, 3, 3)
            shapes[f"decoder.up.{i}.upsample_conv.bias"] = (out,)
    shapes["decoder.norm_out.weight"] = shapes["decoder.norm_out.bias"] = (width,)
    shapes["decoder.conv_out.weight"] = (C, width, 3, 3)
    shapes["decoder.conv_out.bias"] = (C,)
    shapes["quantize.embedding.weight"] = (arch["num_embeddings"], arch["quantized_embed_dim"])
    return shapes


def check_architecture(arch, source):
    """Constraints of MaskGitVQGAN itself (and so of seqgan's copy of it)."""
    problems = []
    if arch["num_channels"] not in (1, 3):
        problems.append(f"images with {arch['num_channels']} channels (seqgan reads 1 or 3)")
    for m in arch["channel_mult"]:
        if (arch["hidden_channels"] * m) % NORM_GROUPS:
            problems.append(f"a level of {arch['hidden_channels'] * m} channels, not divisible by the "
                            f"{NORM_GROUPS} GroupNorm groups")
    if arch["z_channels"] != arch["quantized_embed_dim"]:
        problems.append(f"encoder output of {arch['z_channels']} channels but codes of {arch['quantized_embed_dim']}")
    if problems:
        raise ValueError(f"{source}: not {WHAT}: " + "; ".join(problems) + f"\n---> HINT: {HINT}")


def check_config(config, config_path, arch):
    """The config.json must describe the weights' architecture."""
    differences = []
    for key in ("num_channels", "hidden_channels", "channel_mult", "num_res_blocks", "z_channels", "num_embeddings",
                "quantized_embed_dim"):
        if key in config:
            given = list(config[key]) if key == "channel_mult" else config[key]
            if given != arch[key]:
                differences.append(f"{key} {given} in the config, {arch[key]} in the weights")
    if differences:
        raise ValueError(f"{config_path}: does not describe the weights: " + "; ".join(differences)
                         + "\n---> HINT: pass the config.json saved with these weights, or move it away and pass "
                         "--resolution")


def to_seqgan(state, arch):
    """The tensors under seqgan's names, the decoder's output mapped from [0, 1] to [-1, 1]."""
    import torch

    out = {}
    for name, t in state.items():
        key = name.replace(".nin_shortcut.", ".skip.").replace(".upsample_conv.", ".upsample.conv.")
        if key == "quantize.embedding.weight":
            key = "quantizer.embedding"
        out[key] = t.to(torch.float32).contiguous()
    # y' = 2 y - 1 with y = W * h + b: W' = 2 W, b' = 2 b - 1.
    out["decoder.conv_out.weight"] = (2.0 * state["decoder.conv_out.weight"].double()).float()
    out["decoder.conv_out.bias"] = (2.0 * state["decoder.conv_out.bias"].double() - 1.0).float()
    return out


def seqgan_config(arch, resolution, commitment_cost):
    """The config stored in the tokenizer file: the paper preset (ImageNet 256) with this model's
    data settings and complete tokenizer and quantizer sections (python/seqgan_torch reads every
    key of those two). The quantizer's regulariser and k-means settings are the paper's: they
    only matter to training, which did not happen in seqgan."""
    blocks = arch["num_res_blocks"]
    return {
        "preset": "paper",
        "data": {"channels": arch["num_channels"], "resolution": resolution, "preprocess": "resize",
                 "resize_filter": "bilinear"},
        "tokenizer": {"base_channels": arch["hidden_channels"], "channel_mult": arch["channel_mult"],
                      "num_res_blocks": blocks, "mid_res_blocks": blocks, "code_dim": arch["z_channels"],
                      "codebook_size": arch["num_embeddings"], "norm_groups": NORM_GROUPS, "norm_eps": NORM_EPS,
                      "maskgit_skip": True, "decoder_extra_res_blocks": 0, "decoder_attn_pairs": 0,
                      "attn_window": 8, "attn_heads": 1, "input_range": "0_1"},
        "quantizer": {"beta": commitment_cost, "entropy_gamma": 0.01, "entropy_tau": 1.0, "entropy_sign": -1,
                      "per_sample_entropy_gamma": 0.0, "init_range": 0.0, "kind": "nearest", "factor_dim": 32,
                      "kmeans_every": 0, "kmeans_until": 0, "kmeans_iters": 10},
    }


def convert(src, dst, resolution=None):
    """Writes the seqgan tokenizer for IN to dst; returns (architecture, resolution)."""
    weights = weights_path(src)
    state = read_state(weights)
    arch = derive_architecture(state, weights)
    check_shapes(state, expected_shapes(arch), weights, WHAT, HINT)
    check_architecture(arch, weights)
    config, config_path = read_config(src, weights)
    commitment_cost = 0.25
    if config is not None:
        check_config(config, config_path, arch)
        commitment_cost = float(config.get("commitment_cost", commitment_cost))
        if resolution is None:
            resolution = int(config.get("resolution", 256))
    if resolution is None:
        resolution = 256
    f = 2 ** (len(arch["channel_mult"]) - 1)
    if resolution < 8 or resolution % f:
        raise ValueError(f"resolution {resolution}: must be at least 8 and a multiple of the downsampling factor {f}")
    metadata = {
        "format": "seqgan", "format_version": "1", "kind": "tokenizer", "step": "0", "phase": "1",
        "config": json.dumps(seqgan_config(arch, resolution, commitment_cost), separators=(",", ":")),
        "source": os.path.basename(os.path.normpath(src)),
        "converted_from": "open-muse MaskGitVQGAN (decoder output mapped from [0, 1] to [-1, 1], input_range 0_1)",
    }
    write_safetensors(dst, to_seqgan(state, arch), metadata)
    return arch, resolution


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="MaskGitVQGAN weights: pytorch_model.bin, a .safetensors file, or their folder")
    parser.add_argument("output", help="seqgan tokenizer (.safetensors) to write")
    parser.add_argument("--resolution", type=int, default=None,
                        help="image side the tokenizer is used at (default: config.json's, else 256)")
    args = parser.parse_args()
    try:
        arch, resolution = convert(args.input, args.output, args.resolution)
    except (ValueError, OSError) as e:
        print(f"convert_maskgit_vqgan: {e}", file=sys.stderr)
        return 1
    f = 2 ** (len(arch["channel_mult"]) - 1)
    print(f"wrote {args.output}: {arch['num_embeddings']} codes of {arch['z_channels']}, base width "
          f"{arch['hidden_channels']}, channel_mult {arch['channel_mult']}, {arch['num_res_blocks']} blocks per level, "
          f"{resolution}x{resolution} images -> {resolution // f}x{resolution // f} codes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
