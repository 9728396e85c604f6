"""Checks seqgan_torch against seqgan's own outputs.

    PYTHONPATH=python /usr/bin/python3 -m seqgan_torch.parity DIR [--atol 1e-5]

DIR holds three model files written by seqgan (tokenizer.safetensors, ar.safetensors,
nar.safetensors, each loaded with weights="auto") and expected.safetensors, seqgan's outputs for
fixed inputs:

    tokenizer.images   float32 [B, C, H, W]  images in [-1, 1] at the tokenizer's resolution
    tokenizer.codes    int64   [B, h, w]     TokenizerModel::encode_tensor(tokenizer.images)
    tokenizer.decoded  float32 [B, C, H, W]  TokenizerModel::decode_tensor(tokenizer.codes)
    ar.cond            int64   [B]           class ids (the null class id included; any values
                                             when the model is unconditional)
    ar.tokens          int64   [B, T]        known codes, T <= L - 1
    ar.logits          float32 [B, T + 1, K] TransformerImpl::forward(ar.cond, ar.tokens)
    nar.cond           int64   [B]           as ar.cond
    nar.tokens         int64   [B, L]        codes and mask tokens
    nar.logits         float32 [B, L, K]     TransformerImpl::forward(nar.cond, nar.tokens)

The decoder is fed seqgan's codes, so decoding is checked whatever encoding gives. Prints one
line per quantity (the codes: how many differ; the others: the largest absolute difference), then
"parity: ok" or "parity: FAILED". Exit status 0 when every code agrees and every difference is
at most --atol, 1 when one is not, 2 when the files cannot be read or do not fit each other."""
import argparse
import os
import sys

import torch

from .load import load_tokenizer, load_transformer
from .safetensors_io import read_safetensors

EXPECTED = {
    "tokenizer.images": torch.float32, "tokenizer.codes": torch.int64, "tokenizer.decoded": torch.float32,
    "ar.cond": torch.int64, "ar.tokens": torch.int64, "ar.logits": torch.float32,
    "nar.cond": torch.int64, "nar.tokens": torch.int64, "nar.logits": torch.float32,
}


def read_expected(path):
    tensors, _ = read_safetensors(path)
    problems = [f"missing '{n}'" for n in EXPECTED if n not in tensors]
    problems += [f"'{n}' is {tensors[n].dtype}, expected {d}" for n, d in EXPECTED.items()
                 if n in tensors and tensors[n].dtype != d]
    problems += [f"unexpected '{n}'" for n in sorted(tensors.keys() - EXPECTED.keys())]
    if problems:
        raise ValueError(f"{path}: not the expected outputs this checker reads ({'; '.join(problems)}); "
                         "see `python3 -m seqgan_torch.parity --help` for the tensor names")
    return tensors


class Report:
    def __init__(self, atol):
        self.atol, self.failed = atol, []

    def close(self, name, mine, theirs):
        mine = mine.detach().cpu()
        if mine.shape != theirs.shape:
            self._line(name, f"shape {list(mine.shape)} here, {list(theirs.shape)} from seqgan", False)
            return
        diff = (mine.double() - theirs.double()).abs().max().item() if mine.numel() else 0.0
        scale = theirs.abs().max().item() if theirs.numel() else 0.0
        self._line(name, f"max |diff| {diff:.3e}  (max |seqgan| {scale:.3e}, atol {self.atol:g})", diff <= self.atol)

    def equal(self, name, mine, theirs):
        mine = mine.detach().cpu()
        if mine.shape != theirs.shape:
            self._line(name, f"shape {list(mine.shape)} here, {list(theirs.shape)} from seqgan", False)
            return
        differing = int((mine != theirs).sum())
        self._line(name, f"{differing} of {mine.numel()} differ ({int(theirs.unique().numel())} distinct codes)",
                   differing == 0)

    def _line(self, name, text, ok):
        print(f"{name:<18} {text}{'' if ok else '   <-- FAILED'}")
        if not ok:
            self.failed.append(name)


def check(directory, atol):
    expected = read_expected(os.path.join(directory, "expected.safetensors"))
    report = Report(atol)
    torch.set_grad_enabled(False)

    tok = load_tokenizer(os.path.join(directory, "tokenizer.safetensors"))
    report.equal("tokenizer.codes", tok.encode(expected["tokenizer.images"]), expected["tokenizer.codes"])
    report.close("tokenizer.decoded", tok.decode(expected["tokenizer.codes"]), expected["tokenizer.decoded"])

    for kind, causal in (("ar", True), ("nar", False)):
        path = os.path.join(directory, f"{kind}.safetensors")
        model = load_transformer(path)
        if model.causal != causal:
            raise ValueError(f"{path}: holds a transformer-{'ar' if model.causal else 'nar'}, expected a "
                             f"transformer-{kind}")
        logits = model.logits(expected[f"{kind}.cond"], expected[f"{kind}.tokens"])
        report.close(f"{kind}.logits", logits, expected[f"{kind}.logits"])
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m seqgan_torch.parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="folder of tokenizer/ar/nar.safetensors and expected.safetensors")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest absolute difference allowed (default 1e-5)")
    args = parser.parse_args(argv)
    try:
        report = check(args.dir, args.atol)
    except ValueError as e:
        print(f"parity: {e}", file=sys.stderr)
        return 2
    print("parity: ok" if not report.failed else f"parity: FAILED ({', '.join(report.failed)})")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
