"""Replays a seqgan training run's step trace in PyTorch and compares the two, step by step.

    PYTHONPATH=python /usr/bin/python3 -m seqgan_torch.train_parity TRACE_DIR [--perceptual-weights PATH]

TRACE_DIR is what seqgan's trainers write with --trace DIR (RunOptions::trace_dir):

    initial.safetensors   "model.NAME" (and, for a tokenizer, "disc.NAME"): the weights before the
                          first step. Metadata: kind (tokenizer | transformer), phase (1 | 2) or
                          causal (1 | 0), config (the run's configuration, JSON), trained (JSON
                          [[name, decays], ...]: the generator's / transformer's optimiser
                          parameters), space (transformer: the token space, JSON).
    step-NNNNNN.safetensors  the step's inputs ("input.images"; "input.codes", "input.labels",
                          NAR "input.mask"), the gradients the optimisers used ("grad.model.NAME",
                          "grad.disc.NAME" when the discriminator stepped). Metadata: losses (JSON
                          term -> value), lr, and for a tokenizer gan and r1 (1 | 0).

The reference (seqgan_torch.train_reference) starts from the initial weights and runs every step
on the traced inputs with its own weights and optimisers; seqgan's weights are never loaded again.
Prints one JSON object:

    {"kind": "tokenizer", "phase": 1, "steps": [{"step": 1,
        "losses": {"l1": [seqgan, torch], ...},
        "grads": {"model.decoder.conv_out.weight": [err, ref], ...}}, ...]}

("causal" instead of "phase" for a transformer), err = ||g_seqgan - g_torch||_2 and
ref = ||g_torch||_2 in float64; a summary of the largest differences goes to stderr (gradients
that are zero up to rounding, such as attention key biases, left out of it). Exit status
0 when every step was replayed (judging the figures is the reader's part), 2 when the trace
cannot be read or does not fit the reference: a loss term or gradient on one side only, a step
missing, a flag (GAN, R1) that differs, an empty NAR mask row."""
import argparse
import json
import os
import re
import sys

import torch

from .load import config_section, load_strict
from .models import TokenSpace, Tokenizer, Transformer
from .safetensors_io import read_safetensors
from .train_reference import (Discriminator, TokenizerTraining, TransformerTraining, perceptual_loss,
                              tokenizer_settings)

STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")


def read_trace(directory):
    """(initial tensors, initial metadata, [(step, path)] in step order) of a trace folder."""
    path = os.path.join(directory, "initial.safetensors")
    if not os.path.isfile(path):
        raise ValueError(f"{directory}: no initial.safetensors; pass the folder a trainer wrote with --trace DIR")
    tensors, meta = read_safetensors(path)
    steps = sorted((int(m.group(1)), os.path.join(directory, name))
                   for name in os.listdir(directory) for m in [STEP_FILE.match(name)] if m)
    if not steps:
        raise ValueError(f"{directory}: no step-NNNNNN.safetensors; the run took no step while tracing")
    numbers = [n for n, _ in steps]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise ValueError(f"{directory}: the steps are not consecutive ({numbers[:10]}...); every step from the "
                         "first must be there to replay them")
    if numbers[0] != 1:
        raise ValueError(f"{directory}: the trace starts at step {numbers[0]}; the replay starts from the weights "
                         "before step 1 (trace a fresh run, not a resumed one)")
    return tensors, meta, steps


def meta_json(meta, key, path):
    if key not in meta:
        raise ValueError(f"{path}: the metadata lacks '{key}'; the trace is incomplete (written by another seqgan?)")
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: metadata '{key}' is not JSON ({e}); the trace is damaged") from None


def config_part(config, section, path):
    part = config.get(section)
    if not isinstance(part, dict):
        raise ValueError(f"{path}: the config in the metadata has no '{section}' section; the trace is damaged")
    return part


def with_prefix(tensors, prefix):
    return {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}


def trained_list(meta, path):
    trained = meta_json(meta, "trained", path)
    if not isinstance(trained, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                                for e in trained):
        raise ValueError(f"{path}: metadata 'trained' is not a list of [name, decays] pairs; the trace is damaged")
    names = [n for n, _ in trained]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: metadata 'trained' names a parameter twice; the trace is damaged")
    return trained


def check_trained(traced, reference, path):
    """The optimiser's parameters in the trace are the ones the reference trains."""
    only_trace, only_ref = sorted(set(traced) - set(reference)), sorted(set(reference) - set(traced))
    if only_trace or only_ref:
        raise ValueError(f"{path}: seqgan's optimiser trains other parameters than the reference: only seqgan's "
                         f"{only_trace[:8]}, only the reference's {only_ref[:8]}")


def compare(step, path, traced_losses, losses, traced_grads, grads):
    """One step's record; raises when a term or gradient is on one side only."""
    problems = []
    for what, theirs, mine in (("loss term", traced_losses, losses), ("gradient", traced_grads, grads)):
        only_trace, only_ref = sorted(theirs.keys() - mine.keys()), sorted(mine.keys() - theirs.keys())
        if only_trace:
            problems.append(f"the trace has {what}(s) the reference does not compute: {', '.join(only_trace[:8])}")
        if only_ref:
            problems.append(f"the reference computes {what}(s) the trace lacks: {', '.join(only_ref[:8])}")
    for name in sorted(traced_grads.keys() & grads.keys()):
        if traced_grads[name].shape != grads[name].shape:
            problems.append(f"gradient {name} is {list(traced_grads[name].shape)} in the trace, "
                            f"{list(grads[name].shape)} here")
    if problems:
        raise ValueError(f"{path} (step {step}): " + "; ".join(problems))
    record = {"step": step, "losses": {k: [float(traced_losses[k]), float(losses[k])] for k in traced_losses},
              "grads": {}}
    for name in sorted(traced_grads):
        ours = grads[name].double()
        record["grads"][name] = [(traced_grads[name].double() - ours).norm().item(), ours.norm().item()]
    return record


def read_step(path):
    """(tensors, {term: value}, lr, metadata) of a step file."""
    tensors, meta = read_safetensors(path)
    losses = meta_json(meta, "losses", path)
    if not isinstance(losses, dict) or not all(isinstance(v, (int, float)) for v in losses.values()):
        raise ValueError(f"{path}: metadata 'losses' is not a map of loss terms to numbers; the trace is damaged")
    try:
        lr = float(meta["lr"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: metadata 'lr' is missing or not a number; the trace is damaged") from None
    return tensors, losses, lr, meta


def need(tensors, name, path):
    if name not in tensors:
        raise ValueError(f"{path}: the step lacks tensor '{name}'; the trace is incomplete")
    return tensors[name]


def flag(meta, key, path):
    if meta.get(key) not in ("0", "1"):
        raise ValueError(f"{path}: metadata '{key}' must be \"0\" or \"1\", found {meta.get(key)!r}")
    return meta[key] == "1"


def replay_tokenizer(directory, tensors, meta, steps, perceptual_weights):
    path = os.path.join(directory, "initial.safetensors")
    config = meta_json(meta, "config", path)
    if meta.get("phase") not in ("1", "2"):
        raise ValueError(f"{path}: metadata 'phase' must be \"1\" or \"2\", found {meta.get('phase')!r}")
    phase = int(meta["phase"])
    data = config_section(config, "data", path)
    channels, resolution = int(data["channels"]), int(data["resolution"])
    model = Tokenizer(config_section(config, "tokenizer", path), config_section(config, "quantizer", path), channels,
                      resolution)
    load_strict(model, with_prefix(tensors, "model."), path)
    disc = Discriminator(config_part(config, "discriminator", path), channels, resolution)
    load_strict(disc, with_prefix(tensors, "disc."), path)
    _, alpha = tokenizer_settings(config, phase)
    training = TokenizerTraining(model, disc, perceptual_loss(config, alpha, perceptual_weights), config, phase)
    check_trained([n for n, _ in trained_list(meta, path)], [n for n, _ in training.trained], path)

    records = []
    for number, step_path in steps:
        st, traced_losses, lr, smeta = read_step(step_path)
        gan = flag(smeta, "gan", step_path)
        if gan != training.gan_on():
            raise ValueError(f"{step_path}: seqgan's GAN terms are {'on' if gan else 'off'} at step {number}, the "
                             f"reference's {'on' if training.gan_on() else 'off'} (discriminator.start_iter "
                             f"{config['discriminator'].get('start_iter')}, phase {phase})")
        losses, g_grads, d_grads = training.step(need(st, "input.images", step_path), lr)
        if flag(smeta, "r1", step_path) != ("r1" in losses):
            raise ValueError(f"{step_path}: seqgan {'applied' if smeta['r1'] == '1' else 'skipped'} R1 at step "
                             f"{number}, the reference {'applied' if 'r1' in losses else 'skipped'} it (its "
                             f"discriminator step {training.d_steps})")
        records.append(compare(number, step_path, traced_losses, losses, with_prefix(st, "grad."),
                               {**g_grads, **d_grads}))
    return {"kind": "tokenizer", "phase": phase, "steps": records}


def token_space(meta, path):
    space = meta_json(meta, "space", path)
    try:
        return TokenSpace(int(space["codebook_size"]), int(space["length"]), int(space["num_classes"]),
                          bool(space["null_class"]))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: metadata 'space' is not {{codebook_size, length, num_classes, null_class}}: "
                         f"{meta['space'][:200]}") from None


def replay_transformer(directory, tensors, meta, steps):
    path = os.path.join(directory, "initial.safetensors")
    config = meta_json(meta, "config", path)
    causal = flag(meta, "causal", path)
    space = token_space(meta, path)
    model = Transformer(config_section(config, "transformer", path), space, causal)
    load_strict(model, with_prefix(tensors, "model."), path)
    trained = trained_list(meta, path)
    check_trained([n for n, _ in trained], [n for n, _ in model.named_parameters()], path)
    training = TransformerTraining(model, config, {n for n, decays in trained if decays})

    records = []
    for number, step_path in steps:
        st, traced_losses, lr, _ = read_step(step_path)
        codes = need(st, "input.codes", step_path).long()
        labels = st.get("input.labels")
        if space.num_classes > 0 and labels is None:
            raise ValueError(f"{step_path}: the model is class-conditional but the step lacks 'input.labels'")
        mask = None
        if not causal:
            mask = need(st, "input.mask", step_path)
            if mask.shape != codes.shape or bool(((mask != 0) & (mask != 1)).any()):
                raise ValueError(f"{step_path}: 'input.mask' must be 0/1 of the codes' shape {list(codes.shape)}, "
                                 f"found {list(mask.shape)}")
            empty = (mask.long().sum(1) == 0).nonzero().view(-1)
            if empty.numel():
                raise ValueError(f"{step_path}: the NAR mask covers no position in row(s) {empty[:8].tolist()}; "
                                 "seqgan's mask covers at least one per row")
        losses, grads = training.step(codes, labels, lr, mask)
        records.append(compare(number, step_path, traced_losses, losses, with_prefix(st, "grad."), grads))
    return {"kind": "transformer", "causal": causal, "steps": records}


def summary(result, negligible=1e-7):
    """A line of the largest differences: relative for losses, err/ref for gradients. A gradient
    whose norm is below `negligible` times the step's largest is zero up to rounding (an attention
    key bias, which the softmax cancels): its err/ref is noise, counted apart."""
    worst = {"loss": (-1.0, "", 0), "grad": (-1.0, "", 0)}
    tiny = 0
    for rec in result["steps"]:
        for term, (a, b) in rec["losses"].items():
            rel = abs(a - b) / max(abs(a), abs(b)) if a != b else 0.0
            worst["loss"] = max(worst["loss"], (rel, term, rec["step"]), key=lambda t: t[0])
        largest = max([ref for _, ref in rec["grads"].values()], default=0.0)
        for name, (err, ref) in rec["grads"].items():
            if max(err, ref) <= negligible * largest:
                tiny += 1
                continue
            rel = err / ref if ref > 0 else float("inf")
            worst["grad"] = max(worst["grad"], (rel, name, rec["step"]), key=lambda t: t[0])
    parts = [f"{what} {v:.3e} ({name}, step {step})" if v >= 0 else f"{what}: none"
             for what, (v, name, step) in (("largest relative loss difference", worst["loss"]),
                                           ("largest gradient err/ref", worst["grad"]))]
    if tiny:
        parts.append(f"{tiny} gradient(s) below {negligible:g} of their step's largest norm left out")
    return f"train_parity: {len(result['steps'])} step(s); " + "; ".join(parts)


def replay(directory, perceptual_weights=None):
    """The comparison object for the trace in `directory` (see the module's description)."""
    torch.manual_seed(0)
    tensors, meta, steps = read_trace(directory)
    kind = meta.get("kind")
    if kind == "tokenizer":
        return replay_tokenizer(directory, tensors, meta, steps, perceptual_weights)
    if kind == "transformer":
        return replay_transformer(directory, tensors, meta, steps)
    raise ValueError(f"{directory}/initial.safetensors: metadata kind must be tokenizer or transformer, found {kind!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m seqgan_torch.train_parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", help="folder a trainer wrote with --trace DIR")
    parser.add_argument("--perceptual-weights", metavar="PATH",
                        help="the perceptual loss network's file, when the run's perceptual.weights does not resolve "
                             "from here")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        result = replay(args.trace, args.perceptual_weights)
    except ValueError as e:
        print(f"train_parity: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    print(summary(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
