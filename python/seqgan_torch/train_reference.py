"""seqgan's training steps in plain PyTorch: the losses, networks and optimiser updates of
seqgan's tokenizer trainer (both phases) and transformer trainer, written after the C++ they
mirror, so that a run's steps can be replayed here and compared term by term and gradient by
gradient (seqgan_torch.train_parity reads the step trace a run writes with --trace DIR).

    perceptual loss network   ClassifierNet, Vgg16, load_feature_network  (src/features)
    perceptual loss           PerceptualLoss, perceptual_loss              (src/losses/perceptual.cpp)
    discriminator             Discriminator, minibatch_stddev, discriminator_loss, generator_loss,
                              r1_penalty                                   (src/losses/discriminator.cpp)
    tokenizer training        adaptive_weight, reestimate_codebook, tokenizer_settings,
                              TokenizerTraining                           (src/train/tokenizer_trainer.cpp)
    transformer training      nar_training_mask, transformer_objective,
                              TransformerTraining                         (src/train/transformer_trainer.cpp)

The optimisers are torch.optim.Adam and AdamW: seqgan's Adam (src/train/optim.cpp) is
torch.optim.Adam's update (bias-corrected moments, eps outside the square root) with AdamW's
decoupled weight decay p *= 1 - lr wd on the parameters flagged for it. Everything here runs in
float32 as seqgan does on the CPU; bf16 autocast (CUDA) is not mirrored."""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .load import load_strict
from .models import squared_distances
from .safetensors_io import read_safetensors

# ----- feature networks (the perceptual loss network) -------------------------------------------

STAGE_MULT = (1, 2, 4, 8, 8)
STANDARD_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)  # batch norm follows


class BasicBlock(nn.Module):
    """conv, BN, ReLU, conv, BN, + shortcut (a strided 1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class ClassifierNet(nn.Module):
    """seqgan's small classifier (src/features/classifier.cpp), kind "vgg" (five stages of two
    conv3x3-BN-ReLU, 2x2 max-pool between stages) or "resnet" (conv stem, one basic block per
    stage, stride 2 between stages); stage widths width * (1, 2, 4, 8, 8). `arch` is the checkpoint's
    config "arch" object: kind, channels, width, num_classes, resolution."""

    def __init__(self, arch):
        super().__init__()
        self.arch = dict(arch)
        kind, cin, width = arch["kind"], arch["channels"], arch["width"]
        if kind not in ("vgg", "resnet"):
            raise ValueError(f"unknown classifier kind '{kind}'; seqgan's classifiers are vgg and resnet")
        self.stem = None
        if kind == "resnet":
            self.stem = nn.Sequential(_conv3x3(cin, width), nn.BatchNorm2d(width), nn.ReLU())
            cin = width
        self.stages = []
        for s, mult in enumerate(STAGE_MULT):
            out = width * mult
            if kind == "resnet":
                stage = nn.Sequential(BasicBlock(cin, out, 1 if s == 0 else 2))
            else:
                stage = nn.Sequential(_conv3x3(cin, out), nn.BatchNorm2d(out), nn.ReLU(),
                                      _conv3x3(out, out), nn.BatchNorm2d(out), nn.ReLU())
            self.add_module(f"stage{s + 1}", stage)  # seqgan's names: stage1 ... stage5
            self.stages.append(stage)
            cin = out
        self.head = nn.Linear(cin, arch["num_classes"])

    def tap_names(self):
        return list(STANDARD_TAPS) + ["features", "logit"]

    def adapt_input(self, x):
        """A grey batch to a 3-channel network is repeated; RGB to a 1-channel one becomes ITU-R 601 luma."""
        if x.dim() != 4 or x.size(1) not in (1, 3) or x.size(2) < 16 or x.size(3) < 16:
            raise ValueError(f"classifier: expected images [B, 1|3, H, W] with H, W >= 16, found {list(x.shape)}")
        if x.size(1) == self.arch["channels"]:
            return x
        if self.arch["channels"] == 3:
            return x.expand(-1, 3, -1, -1)
        return (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, True)

    def taps(self, x, names):
        """{name: activation} for the requested taps of images x [B, C, H, W] in [-1, 1]; runs only
        as deep as the deepest one."""
        offered = self.tap_names()
        positions = _tap_positions(names, offered, "classifier " + self.arch["kind"])
        out = {}
        if not positions:
            return out
        deepest = max(positions)
        h = self.adapt_input(x)
        if self.stem is not None:
            h = self.stem(h)
        for s, stage in enumerate(self.stages[:deepest + 1]):
            if self.stem is None and s > 0:
                h = F.max_pool2d(h, 2)  # [B, c, H, W] -> [B, c, H/2, W/2]
            h = stage(h)
            if s in positions:
                out[offered[s]] = h
        if deepest >= 5:
            features = h.mean((2, 3))  # [B, 8 width, h, w] -> [B, 8 width]
            if 5 in positions:
                out["features"] = features
            if 6 in positions:
                out["logit"] = self.head(features)
        return out


class Vgg16(nn.Module):
    """torchvision's VGG16 in its own layout (features, avgpool, classifier), with seqgan's taps:
    relu1_2 ... relu5_3 at features 3, 8, 15, 22, 29, and "logit" (the 1000 ImageNet classes).
    Images in [-1, 1] are brought to [0, 1] and ImageNet's mean and deviation first."""

    TAP_INDICES = (3, 8, 15, 22, 29)

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for stage in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
            for cout in stage:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000))

    def tap_names(self):
        return list(STANDARD_TAPS) + ["logit"]

    def taps(self, x, names):
        positions = _tap_positions(names, self.tap_names(), "vgg16")
        out = {}
        if not positions:
            return out
        want_logit = max(positions) == len(self.TAP_INDICES)
        last = len(self.features) - 1 if want_logit else self.TAP_INDICES[max(positions)]
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        h = ((x.expand(-1, 3, -1, -1) if x.size(1) == 1 else x) + 1) * 0.5
        h = (h - mean) / std
        for index in range(last + 1):
            h = self.features[index](h)
            if index in self.TAP_INDICES and self.TAP_INDICES.index(index) in positions:
                out[STANDARD_TAPS[self.TAP_INDICES.index(index)]] = h
        if want_logit:
            out["logit"] = self.classifier(self.avgpool(h).flatten(1))
        return out


def _tap_positions(names, offered, what):
    for i, name in enumerate(names):
        if name not in offered:
            raise ValueError(f"{what} has no tap '{name}'; use one of: {', '.join(offered)}")
        if name in names[:i]:
            raise ValueError(f"tap '{name}' is requested twice")
    return [offered.index(n) for n in names]


def _fit_step_counters(tensors, module):
    """Batch norm's step counter: a scalar here, [1] in some files; only its element count matters."""
    own = module.state_dict()
    return {n: t.reshape(own[n].shape) if n.endswith("num_batches_tracked") and n in own and t.numel() == own[n].numel()
            else t for n, t in tensors.items()}


def load_feature_network(kind, path):
    """The perceptual loss network seqgan's load_feature_network builds, frozen (eval mode, no
    parameter requires grad): kind "classifier" (a `seqgan train-classifier` checkpoint; its
    architecture is read from the file) or "vgg16" (torchvision's VGG16 in safetensors)."""
    if kind not in ("classifier", "vgg16"):
        raise ValueError(f"unknown perceptual network '{kind}'; seqgan's perceptual.network is classifier or vgg16")
    tensors, meta = read_safetensors(path)
    if kind == "classifier":
        if meta.get("format") != "seqgan" or meta.get("kind") != "classifier":
            raise ValueError(f"{path}: not a classifier checkpoint (format '{meta.get('format')}', kind "
                             f"'{meta.get('kind')}'); set perceptual.weights to a file of `seqgan train-classifier`")
        try:
            arch = json.loads(meta["config"])["arch"]
            net = ClassifierNet(arch)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: the checkpoint config holds no valid 'arch' ({type(e).__name__}: {e}); "
                             "train the classifier again") from None
    else:
        if "format" in meta and meta.get("kind") != "vgg16":
            raise ValueError(f"{path}: expected vgg16 weights, found kind '{meta.get('kind')}'")
        net = Vgg16()
    load_strict(net, _fit_step_counters(tensors, net), path)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ----- perceptual loss --------------------------------------------------------------------------

class PerceptualLoss(nn.Module):
    """seqgan's semantic-enhanced perceptual loss: per tap the mean over all elements of
    (f(rec) - f(target))^2 (low taps unit-normalised per position first when lpips_normalize:
    f / sqrt(|f|^2 + lpips_eps)), summed per group; weight * (alpha L_sem + (1 - alpha) L_low).
    A group is computed only when its share is non-zero. The network stays frozen in eval mode."""

    def __init__(self, network, alpha, weight=1.0, lpips_normalize=False, low_taps=STANDARD_TAPS,
                 sem_taps=("relu5_3", "logit"), lpips_eps=1e-10):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"expected alpha in [0, 1], found {alpha}; set perceptual.alpha (phase 2: phase2.alpha)")
        if alpha < 1 and not low_taps:
            raise ValueError(f"alpha = {alpha} weighs L_low, but low_taps is empty; name the low taps or set alpha = 1")
        if alpha > 0 and not sem_taps:
            raise ValueError(f"alpha = {alpha} weighs L_sem, but sem_taps is empty; name the semantic taps or set "
                             "alpha = 0")
        self.network = network
        self.alpha, self.weight, self.lpips_normalize, self.lpips_eps = alpha, weight, lpips_normalize, lpips_eps
        self.low_taps, self.sem_taps = list(low_taps), list(sem_taps)
        needed = (self.low_taps if alpha < 1 else []) + (self.sem_taps if alpha > 0 else [])
        self.needed = list(dict.fromkeys(needed))
        network.eval()
        for p in network.parameters():
            p.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, rec, target):
        """(the weighted loss, {"low": L_low, "sem": L_sem} of the groups computed, detached)."""
        with torch.no_grad():  # the target is a constant of the loss
            ref = self.network.taps(target, self.needed)
        got = self.network.taps(rec, self.needed)

        def group(names, normalize):
            total = None
            for name in names:
                a, b = got[name], ref[name]
                if normalize:
                    a = a * torch.rsqrt(a.pow(2).sum(1, keepdim=True) + self.lpips_eps)
                    b = b * torch.rsqrt(b.pow(2).sum(1, keepdim=True) + self.lpips_eps)
                d = (a - b).pow(2).mean()
                total = d if total is None else total + d
            return total

        loss, groups = None, {}
        if self.alpha > 0:
            sem = group(self.sem_taps, False)
            groups["sem"] = sem.detach()
            loss = self.alpha * sem
        if self.alpha < 1:
            low = group(self.low_taps, self.lpips_normalize)
            groups["low"] = low.detach()
            loss = (1 - self.alpha) * low if loss is None else loss + (1 - self.alpha) * low
        return self.weight * loss, groups


def perceptual_loss(config, alpha, weights=None):
    """The PerceptualLoss of seqgan's config (its "perceptual" section) at semantic ratio `alpha`;
    `weights` overrides perceptual.weights (the path the run used may not resolve here)."""
    pc = _section(config, "perceptual")
    path = weights or pc["weights"]
    if not path or not os.path.isfile(path):
        raise ValueError(f"the perceptual loss network's weights '{path}' (perceptual.weights) are not a file here; "
                         "pass the file the run used (train_parity: --perceptual-weights PATH)")
    net = load_feature_network(pc["network"], path)
    return PerceptualLoss(net, alpha, pc["weight"], pc["lpips_normalize"], pc["low_taps"], pc["sem_taps"])


# ----- discriminator ------------------------------------------------------------------------------

def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _dconv(cin, cout, k, bias):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class DiscBlock(nn.Module):
    """conv3x3, lrelu, conv3x3, 2x average pool, lrelu; skip: 2x average pool, conv1x1; sum / sqrt(2)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = _dconv(cin, cin, 3, True)
        self.conv2 = _dconv(cin, cout, 3, True)
        self.skip = _dconv(cin, cout, 1, False)

    def forward(self, x):  # [B, Cin, H, W] -> [B, Cout, H/2, W/2]
        h = _lrelu(F.avg_pool2d(self.conv2(_lrelu(self.conv1(x))), 2))
        return (h + self.skip(F.avg_pool2d(x, 2))) * (1.0 / math.sqrt(2.0))


def minibatch_stddev(x, group_size):
    """Appends the standard deviation over groups of the batch (averaged over channels and
    positions) as one extra feature map: [B, C, H, W] -> [B, C + 1, H, W]."""
    B, C, H, W = x.shape
    G = min(group_size, B)
    if B % G:
        raise ValueError(f"batch of {B} is not divisible by the minibatch-stddev group {G}; use a batch size "
                         "divisible by discriminator.mbstd_group")
    y = x.reshape(G, B // G, C, H, W)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # [M, C, H, W]
    y = y.mean((1, 2, 3)).reshape(B // G, 1, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y], 1)


class Discriminator(nn.Module):
    """seqgan's StyleGAN2-style residual discriminator, with its parameter names (from_rgb,
    blocks.N.{conv1, conv2, skip}, conv_out, fc, out). `dc`: the config's "discriminator" section."""

    def __init__(self, dc, image_channels, resolution):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"the discriminator needs a power-of-two resolution >= 8, got {resolution}")
        self.mbstd_group = dc["mbstd_group"]

        def width(res):
            return min(dc["max_channels"], dc["base_channels"] * (resolution // res))

        self.from_rgb = _dconv(image_channels, width(resolution), 1, True)
        blocks, res = [], resolution
        while res > 4:
            blocks.append(DiscBlock(width(res), width(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        w4 = width(4)
        self.conv_out = _dconv(w4 + 1, w4, 3, True)
        self.fc = nn.Linear(w4 * 16, w4)
        self.out = nn.Linear(w4, 1)

    def forward(self, x):  # [B, c, R, R] -> [B] logits
        h = _lrelu(self.from_rgb(x))
        for b in self.blocks:
            h = b(h)
        h = _lrelu(self.conv_out(minibatch_stddev(h, self.mbstd_group)))  # [B, C, 4, 4]
        h = _lrelu(self.fc(h.flatten(1)))
        return self.out(h).view(-1)


def discriminator_loss(real_logits, fake_logits):
    """softplus(D(fake)) + softplus(-D(real)), batch means."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def generator_loss(fake_logits):
    """softplus(-D(fake)), batch mean (non-saturating)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits, real, gamma):
    """gamma / 2 E ||d D(real) / d real||^2; `real` requires grad and produced `real_logits`."""
    grad, = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).sum((1, 2, 3)).mean()


# ----- tokenizer training -----------------------------------------------------------------------

def adaptive_weight(rec_loss, g_loss, last_layer):
    """VQGAN's adaptive weight |grad L_rec| / (|grad L_G| + 1e-4) at the decoder's last layer,
    clamped to [0, 1e4], detached."""
    g_rec, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    g_gan, = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()


@torch.no_grad()
def reestimate_codebook(quantizer, points, iterations, generator):
    """seqgan's k-means re-estimation of the codebook: Lloyd iterations on `points` [N, d] (the
    batch's encoder outputs in lookup space) from the current codes; codes no point chose in the
    last iteration move onto points drawn with `generator`. Returns how many moved."""
    points = points.float()
    K, N = quantizer.embedding.size(0), points.size(0)
    centres = quantizer.codes().float().clone()
    empty_mask = None
    for _ in range(iterations):
        assign = squared_distances(points, centres).argmin(1)
        counts = torch.bincount(assign, minlength=K).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        empty_mask = counts == 0
        centres = torch.where(empty_mask.unsqueeze(1), centres, sums / counts.clamp_min(1).unsqueeze(1))
        if quantizer.factorized:
            centres = F.normalize(centres, dim=1)
    empty = empty_mask.nonzero().view(-1) if empty_mask is not None else torch.empty(0, dtype=torch.long)
    if empty.numel() and N:
        pick = torch.randint(N, (empty.numel(),), generator=generator)
        centres.index_copy_(0, empty, points.index_select(0, pick))
    quantizer.embedding.copy_(centres.to(quantizer.embedding.dtype))
    return empty.numel()


def _section(config, name):
    part = config.get(name)
    if not isinstance(part, dict):
        raise ValueError(f"the configuration has no '{name}' section; pass the whole configuration of the run")
    return part


TRAIN_KEYS = ("beta1", "beta2", "d_lr", "l1_weight")


def tokenizer_settings(config, phase):
    """(training settings, perceptual alpha) of a tokenizer phase, read as seqgan's
    TokenizerTrainer reads them: phase 1 train_tokenizer and perceptual.alpha; phase 2 the phase2
    section's training keys (written flat, phase2.lr, phase2.d_lr, ...; a nested phase2.train is
    read too) and phase2.alpha."""
    if phase == 1:
        train, alpha = _section(config, "train_tokenizer"), _section(config, "perceptual").get("alpha")
    elif phase == 2:
        p2 = _section(config, "phase2")
        train = p2["train"] if isinstance(p2.get("train"), dict) else p2
        alpha = p2.get("alpha")
    else:
        raise ValueError(f"tokenizer phase must be 1 or 2, got {phase}")
    where = "train_tokenizer" if phase == 1 else "phase2"
    missing = [f"{where}.{k}" for k in TRAIN_KEYS if k not in train] + ([] if alpha is not None else ["alpha"])
    if missing:
        raise ValueError(f"the configuration lacks {', '.join(missing)}; pass the whole configuration of the run")
    return train, alpha


class TokenizerTraining:
    """seqgan's TokenizerTrainer for one phase: `step(x, lr)` is one generator step (and, with
    the GAN on, the discriminator's step after it) on images x [B, C, H, W] in [-1, 1].
    Phase 1 trains the whole tokenizer (L1, perceptual, codebook, commitment and entropy terms;
    the GAN from discriminator.start_iter). Phase 2 trains the decoder alone, from the codes of the
    frozen encoder and quantizer, with the GAN from its first step. Adam (betas of the phase's
    settings, eps 1e-8); the discriminator's at d_lr. `steps` counts the steps taken (the step's
    0-based index), `d_steps` the discriminator's (lazy R1: every r1_interval of them)."""

    def __init__(self, model, disc, perceptual, config, phase):
        self.model, self.disc, self.perceptual, self.config, self.phase = model, disc, perceptual, config, phase
        self.tt, _ = tokenizer_settings(config, phase)
        self.dc, self.qc = _section(config, "discriminator"), _section(config, "quantizer")
        self.steps = self.d_steps = 0
        model.train()
        if phase == 2:
            for part in (model.encoder, model.quantizer):
                part.eval()
                for p in part.parameters():
                    p.requires_grad_(False)
        self.trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        betas = (self.tt["beta1"], self.tt["beta2"])
        self.opt_g = torch.optim.Adam([p for _, p in self.trained], lr=self.tt.get("lr", 1e-4), betas=betas,
                                      eps=1e-8, weight_decay=0.0)
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=self.tt["d_lr"], betas=betas, eps=1e-8, weight_decay=0.0)

    def gan_on(self):
        return self.phase == 2 or self.steps >= self.dc["start_iter"]

    def step(self, x, lr):
        """One training step at generator learning rate `lr`. Returns (losses {term: float},
        generator grads {"model." + name: tensor}, discriminator grads {"disc." + name: tensor},
        empty when it did not step), the gradients as the optimisers used them."""
        model, tt, dc = self.model, self.tt, self.dc
        x = x.float()
        losses = {}
        z_e = None
        if self.phase == 2:
            with torch.no_grad():
                indices = model.quantizer.nearest(model.encoder(x))
            rec = model.decoder(model.quantizer.lookup(indices)).float()
            vq_loss = torch.zeros(())
        else:
            z_e = model.encoder(x)
            z_q, _, terms = model.quantizer.forward_terms(z_e)
            rec = model.decoder(z_q).float()
            vq_loss = terms["codebook"] + terms["commit"] + terms["entropy"]
            losses.update({k: v.item() for k, v in terms.items()})
        l1 = (x - rec).abs().mean()
        per, groups = self.perceptual(rec, x)
        losses.update({"l1": l1.item(), "perceptual": per.item()})
        losses.update({f"perceptual.{k}": v.item() for k, v in groups.items()})
        rec_loss = tt["l1_weight"] * l1 + per
        loss = rec_loss + vq_loss
        gan = self.gan_on()
        if gan:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            g_adv = generator_loss(self.disc(rec).float())
            adv_weight = dc["adv_weight"]
            if dc["adaptive_weight"]:
                adv_weight *= adaptive_weight(rec_loss, g_adv, model.decoder.conv_out.weight).item()
            loss = loss + adv_weight * g_adv
            losses.update({"g_adv": g_adv.item(), "adv_weight": adv_weight})
        losses["loss"] = loss.item()
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        g_grads = {f"model.{n}": p.grad.detach().clone() for n, p in self.trained if p.grad is not None}
        points = self._kmeans_points(z_e)
        self.opt_g.step()
        if points is not None:
            seed = (int(self.config["seed"]) * 1000003 + self.steps) % 2 ** 64
            reestimate_codebook(model.quantizer, points, self.qc["kmeans_iters"], torch.Generator().manual_seed(seed))
        d_grads = self._discriminator_step(x, rec, losses) if gan else {}
        self.steps += 1
        return losses, g_grads, d_grads

    def _kmeans_points(self, z_e):
        """Phase 1's batch in lookup space when the k-means re-estimation follows this step."""
        qc, nxt = self.qc, self.steps + 1
        every, until = qc.get("kmeans_every", 0), qc.get("kmeans_until", 0)
        if self.phase == 2 or every <= 0 or nxt % every or (until and nxt > until):
            return None
        with torch.no_grad():
            D = z_e.size(1)
            return self.model.quantizer.to_lookup_space(z_e.detach().float().permute(0, 2, 3, 1).reshape(-1, D))

    def _discriminator_step(self, x, rec, losses):
        dc = self.dc
        for p in self.disc.parameters():
            p.requires_grad_(True)
        self.d_steps += 1
        do_r1 = dc["r1_gamma"] > 0 and self.d_steps % dc["r1_interval"] == 0
        real = x.detach().requires_grad_(do_r1)
        real_logits = self.disc(real).float()
        d_loss = discriminator_loss(real_logits, self.disc(rec.detach()).float())
        losses["d_loss"] = d_loss.item()
        if do_r1:
            r1 = r1_penalty(real_logits, real, dc["r1_gamma"])
            losses["r1"] = r1.item()
            d_loss = d_loss + r1 * dc["r1_interval"]
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        grads = {f"disc.{n}": p.grad.detach().clone() for n, p in self.disc.named_parameters() if p.grad is not None}
        self.opt_d.step()
        return grads


# ----- transformer training ---------------------------------------------------------------------

def nar_training_mask(codes, generator=None):
    """seqgan's NAR training mask [B, L] bool: per row n = clamp(floor(cos(r pi / 2) L), 1, L)
    positions (r uniform in [0, 1)), the n with the smallest uniform scores."""
    B, L = codes.shape
    r = torch.rand(B, dtype=torch.float64, generator=generator)
    n = torch.floor(torch.cos(r * (math.pi / 2.0)) * L).clamp(1, L).long()
    scores = torch.rand(B, L, dtype=torch.float64, generator=generator)
    return (scores.argsort(1).argsort(1) < n.unsqueeze(1)).to(codes.device)


def transformer_objective(model, codes, labels, smoothing, mask=None):
    """Mean cross-entropy (label smoothing `smoothing`) of seqgan's objective. AR: the logits of
    [cond, codes[:, :-1]] against all L codes. NAR: the input is the codes with the positions of
    `mask` [B, L] (bool or 0/1) replaced by the mask token; the loss covers the masked ones."""
    K, L = model.space.codebook_size, codes.size(1)
    if model.causal:
        logits = model(labels, codes[:, :L - 1]).reshape(-1, K)
        targets = codes.reshape(-1)
    else:
        if mask is None:
            raise ValueError("a NAR objective needs the mask of the positions to predict (nar_training_mask)")
        mask = mask.bool()
        tokens = torch.where(mask, torch.full_like(codes, model.space.mask_token), codes)
        logits = model(labels, tokens)[mask]  # [M, K], row-major over the masked positions
        targets = codes[mask]
    return F.cross_entropy(logits.float(), targets, reduction="mean", label_smoothing=smoothing)


class TransformerTraining:
    """seqgan's TransformerTrainer's step: the objective, backward and AdamW (decoupled weight
    decay train_ar/train_nar.weight_decay on the parameters `decays` names, betas of the section,
    eps 1e-8). `decays`: names of the decaying parameters (seqgan: ".weight" matrices outside
    layer norms and embeddings); None: seqgan's rule. Dropout draws cannot be replayed: the model
    must have transformer.dropout = 0."""

    def __init__(self, model, config, decays=None):
        self.model = model
        section = "train_ar" if model.causal else "train_nar"
        self.tc = _section(config, section)
        dropout = _section(config, "transformer").get("dropout", 0)
        if dropout > 0:
            raise ValueError(f"the run trains with transformer.dropout = {dropout}: its random draws cannot be "
                             "replayed here; trace a run with --set transformer.dropout=0")
        if decays is None:
            decays = {n for n, _ in model.named_parameters()
                      if n.endswith(".weight") and "ln" not in n and "emb" not in n}
        self.trained = list(model.named_parameters())
        groups = [{"params": [p for n, p in self.trained if n in decays], "weight_decay": self.tc["weight_decay"]},
                  {"params": [p for n, p in self.trained if n not in decays], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=self.tc["lr"], betas=(self.tc["beta1"], self.tc["beta2"]), eps=1e-8)
        model.train()

    def step(self, codes, labels, lr, mask=None):
        """One step on codes [B, L] int64, class ids [B] (None: unconditional), NAR `mask`.
        Returns ({"loss": float}, grads {"model." + name: tensor})."""
        loss = transformer_objective(self.model, codes.long(), labels, self.tc["label_smoothing"], mask)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = {f"model.{n}": p.grad.detach().clone() for n, p in self.trained if p.grad is not None}
        self.opt.step()
        return {"loss": loss.item()}, grads
