"""The Python side of `seqgan bench`: for each case file seqgan wrote (a model's weights, an input,
seqgan's outputs for that input, and how to time it), build the same model in PyTorch eager mode
with seqgan_torch.models (python/seqgan_torch, the PyTorch interop module), load the weights,
check that its outputs agree with seqgan's, and time the same training step the same way (best of
`repeats` runs of at least `min_seconds`).

  python3 tools/reference/bench.py CASE.safetensors [...] > results.json

Prints a JSON list, one object per case: case, rate (units per second), unit, the largest
difference of each output relative to its largest magnitude, torch version and threads."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(TOOLS), "python"))

try:
    from seqgan_torch import models
    from seqgan_torch.safetensors_io import read_safetensors
except ImportError as e:
    sys.exit(f"bench.py: cannot import seqgan_torch ({e}); it is the python/ folder of the seqgan source tree "
             "this script belongs to: run tools/reference/bench.py from a whole source tree")


def best_rate(fn, work_per_call, repeats, min_seconds):
    """Units of work per second of fn(), best of `repeats` timed runs, after one untimed call."""
    fn()
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            secs = time.perf_counter() - start
            if secs >= min_seconds:
                break
        best = max(best, work_per_call * calls / secs)
    return best


def relative_difference(mine, theirs):
    theirs = torch.as_tensor(theirs).to(mine.dtype)
    if mine.shape != theirs.shape:
        raise ValueError(f"shape {list(mine.shape)} here, {list(theirs.shape)} from seqgan")
    scale = max(theirs.abs().max().item(), 1e-12)
    return (mine - theirs).abs().max().item() / scale


def tokenizer_case(meta, tensors, params):
    cfg = json.loads(meta["config"])
    model = models.Tokenizer(cfg["tokenizer"], cfg["quantizer"], int(meta["image_channels"]))
    model.load_state_dict(params, strict=True)
    x = tensors["input.x"]

    def loss_of(out):
        recon, _, vq = out
        return (recon - x).abs().mean() + vq

    with torch.no_grad():
        out = model(x)
        agree = {"reconstruction": relative_difference(out[0], tensors["output.reconstruction"]),
                 "loss": relative_difference(loss_of(out), tensors["output.loss"]),
                 "indices_differing": int((out[1] != torch.as_tensor(tensors["output.indices"])).sum())}
    opt = torch.optim.Adam(model.parameters(), lr=float(meta["lr"]))

    def step():
        opt.zero_grad()
        loss_of(model(x)).backward()
        opt.step()

    return step, x.shape[0], "img/s", agree


def transformer_case(meta, tensors, params):
    cfg = json.loads(meta["config"])
    causal = meta["causal"] == "1"
    space = models.TokenSpace(int(meta["codebook_size"]), int(meta["length"]), int(meta["num_classes"]),
                              meta.get("null_class") == "1")
    K = space.codebook_size
    model = models.Transformer(cfg["transformer"], space, causal)
    model.load_state_dict(params, strict=True)
    cond, tokens = tensors["input.cond"].long(), tensors["input.tokens"].long()
    inputs = tokens[:, :-1] if causal else tokens
    model.eval()
    with torch.no_grad():
        agree = {"logits": relative_difference(model(cond, inputs), tensors["output.logits"])}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(meta["lr"]))

    def step():
        opt.zero_grad()
        logits = model(cond, inputs)
        F.cross_entropy(logits.reshape(-1, K), tokens.reshape(-1)).backward()
        opt.step()

    return step, tokens.numel(), "tokens/s", agree


def run_case(path):
    tensors, meta = read_safetensors(path)
    params = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    threads = int(meta.get("threads", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    build = {"tokenizer": tokenizer_case, "transformer": transformer_case}[meta["kind"]]
    step, work, unit, agree = build(meta, tensors, params)
    rate = best_rate(step, float(work), int(meta["repeats"]), float(meta["min_seconds"]))
    return {"case": meta["case"], "rate": rate, "unit": unit, "agreement": agree,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps([run_case(p) for p in argv[1:]], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
