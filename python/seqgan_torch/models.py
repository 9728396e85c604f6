"""seqgan's tokenizer and transformer as PyTorch modules: the same layers in the same order,
with seqgan's parameter names, so that a state dict written by seqgan loads here unchanged.

Configuration dictionaries are seqgan's own JSON sections ("tokenizer", "quantizer",
"transformer"), as a model file's config metadata and `seqgan info --json` hold them. The
loaders in seqgan_torch.load build these modules from a model file; `seqgan bench` times them
(tools/reference/bench.py)."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(channels, tok):
    return nn.GroupNorm(tok["norm_groups"], channels, eps=tok["norm_eps"], affine=True)


def conv(cin, cout, k, bias):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def attention(q, k, v, mask=None, causal=False, dropout=0.0):
    """softmax(q k^T / sqrt(d) [+ mask]) v; mask is additive (float) or boolean (True = keep)."""
    if hasattr(F, "scaled_dot_product_attention") and not (causal and mask is not None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        lq, lk = q.size(-2), k.size(-2)
        allowed = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    w = scores.softmax(-1)
    if dropout > 0:
        w = F.dropout(w, dropout, True)
    return w @ v


class ResBlock(nn.Module):
    """GN, SiLU, conv3x3, GN, SiLU, conv3x3 (no biases); a 1x1 skip when the width changes, on the
    block's output (MaskGIT, tokenizer.maskgit_skip) or on its input."""

    def __init__(self, cin, cout, tok):
        super().__init__()
        self.skip_on_output = tok["maskgit_skip"]
        self.norm1 = group_norm(cin, tok)
        self.conv1 = conv(cin, cout, 3, False)
        self.norm2 = group_norm(cout, tok)
        self.conv2 = conv(cout, cout, 3, False)
        self.skip = conv(cout if self.skip_on_output else cin, cout, 1, False) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.skip is None:
            return x + h
        return h + self.skip(h) if self.skip_on_output else self.skip(x) + h


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = conv(channels, channels, 3, True)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # [B, C, H, W] -> [B, C, 2H, 2W]


class WindowAttention(nn.Module):
    """Attention within b x b windows ("regional") or across the windows at one offset
    ("dilated"), on a grid padded to a multiple of b; padded keys are masked out."""

    def __init__(self, channels, heads, window, regional, tok):
        super().__init__()
        self.heads, self.b, self.regional = heads, window, regional
        self.norm = group_norm(channels, tok)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)
        with torch.no_grad():  # the block starts as the identity, as seqgan adds it in phase 2
            self.proj_out.weight.zero_()
            self.proj_out.bias.zero_()

    def _group(self, t, nh, nw):
        B, C = t.shape[:2]
        b = self.b
        t = t.reshape(B, C, nh, b, nw, b)
        if self.regional:  # windows are the groups, positions inside one the sequence
            return t.permute(0, 2, 4, 3, 5, 1).reshape(B * nh * nw, b * b, C)
        return t.permute(0, 3, 5, 2, 4, 1).reshape(B * b * b, nh * nw, C)

    def forward(self, x):
        B, C, H, W = x.shape
        b = self.b
        Hp, Wp = -(-H // b) * b, -(-W // b) * b
        nh, nw = Hp // b, Wp // b
        h = self.norm(x)
        padded = (Hp, Wp) != (H, W)
        if padded:
            h = F.pad(h, (0, Wp - W, 0, Hp - H))
        tokens = self._group(h, nh, nw)  # [B, C, Hp, Wp] -> [B G, L, C]
        G, L = tokens.shape[:2]
        d = C // self.heads

        def split(t):
            return t.reshape(G, L, self.heads, d).transpose(1, 2)  # [B G, L, C] -> [B G, heads, L, d]

        mask = None
        if padded:
            # Additive and finite: a group made of padding alone gives no NaN (its rows are cropped).
            valid = torch.zeros(1, 1, Hp, Wp, dtype=x.dtype, device=x.device)
            valid[:, :, :H, :W] = 1
            mask = ((self._group(valid, nh, nw).reshape(-1, L) - 1) * 1e9).repeat(B, 1).reshape(G, 1, 1, L)
        out = attention(split(self.q(tokens)), split(self.k(tokens)), split(self.v(tokens)), mask)
        out = self.proj_out(out.transpose(1, 2).reshape(G, L, C))
        if self.regional:
            out = out.reshape(B, nh, nw, b, b, C).permute(0, 5, 1, 3, 2, 4)
        else:
            out = out.reshape(B, b, b, nh, nw, C).permute(0, 5, 3, 1, 4, 2)
        out = out.reshape(B, C, Hp, Wp)[:, :, :H, :W]
        return x + out


class EncoderLevel(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.block = nn.Sequential(*blocks)


class Encoder(nn.Module):
    def __init__(self, tok, image_channels):
        super().__init__()
        base, mult = tok["base_channels"], tok["channel_mult"]
        input_range = tok.get("input_range", "minus1_1")
        if input_range not in ("minus1_1", "0_1"):
            raise ValueError(f"unknown tokenizer.input_range {input_range!r}: expected minus1_1 or 0_1")
        self.unit_input = input_range == "0_1"  # MaskGIT's weights: (x + 1) / 2 before conv_in
        self.conv_in = conv(image_channels, base, 3, False)
        self.down = nn.ModuleList()
        cin = base
        for m in mult:
            width, blocks = base * m, []
            for _ in range(tok["num_res_blocks"]):
                blocks.append(ResBlock(cin, width, tok))
                cin = width
            self.down.append(EncoderLevel(blocks))
        self.mid = nn.Sequential(*[ResBlock(cin, cin, tok) for _ in range(tok["mid_res_blocks"])])
        self.norm_out = group_norm(cin, tok)
        self.conv_out = conv(cin, tok["code_dim"], 1, True)

    def forward(self, x):  # [B, c, H, W] -> [B, code_dim, H/f, W/f]
        if self.unit_input:
            x = x * 0.5 + 0.5
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level.block(h)
            if i + 1 < len(self.down):
                h = F.avg_pool2d(h, 2)  # [B, C, H, W] -> [B, C, H/2, W/2]
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DecoderLevel(nn.Module):
    """Residual blocks, then regional/dilated attention pairs, then (except at full resolution)
    the upsampling."""

    def __init__(self, cin, channels, blocks, attn_pairs, upsample, tok):
        super().__init__()
        layers = []
        for _ in range(blocks):
            layers.append(ResBlock(cin, channels, tok))
            cin = channels
        self.block = nn.Sequential(*layers)
        self.attn = nn.ModuleList()
        for _ in range(attn_pairs):
            self.attn.append(WindowAttention(channels, tok["attn_heads"], tok["attn_window"], True, tok))
            self.attn.append(WindowAttention(channels, tok["attn_heads"], tok["attn_window"], False, tok))
        self.upsample = Upsample(channels) if upsample else None

    def forward(self, x):
        x = self.block(x)
        for a in self.attn:
            x = a(x)
        return self.upsample(x) if self.upsample is not None else x


class Decoder(nn.Module):
    """tokenizer.decoder_attn_pairs attention pairs per level: a phase-2 file's config counts the
    pairs phase 2 added, so the same class builds both phases."""

    def __init__(self, tok, image_channels):
        super().__init__()
        base, mult = tok["base_channels"], tok["channel_mult"]
        width = base * mult[-1]
        self.conv_in = conv(tok["code_dim"], width, 3, True)
        self.mid = nn.Sequential(*[ResBlock(width, width, tok) for _ in range(tok["mid_res_blocks"])])
        made = [None] * len(mult)
        for i in reversed(range(len(mult))):
            out = base * mult[i]
            made[i] = DecoderLevel(width, out, tok["num_res_blocks"] + tok["decoder_extra_res_blocks"],
                                   tok["decoder_attn_pairs"], i > 0, tok)
            width = out
        self.up = nn.ModuleList(made)  # index = level; run from the lowest resolution up
        self.norm_out = group_norm(width, tok)
        self.conv_out = conv(width, image_channels, 3, True)

    def forward(self, z):  # [B, code_dim, h, w] -> [B, c, h f, w f]
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def squared_distances(z, codes):
    """|z|^2 - 2 z.e + |e|^2: z [N, D], codes [K, D] -> [N, K]."""
    return z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.t() + codes.pow(2).sum(1).unsqueeze(0)


class Quantizer(nn.Module):
    """Nearest code, straight-through gradient, codebook and commitment terms, and the entropy
    regulariser on the soft assignment softmax(-d / tau). quantizer.kind "factorized" (ViT-VQGAN)
    looks codes up in a factor_dim space: in_proj, then both sides L2-normalised; out_proj back."""

    def __init__(self, codebook_size, code_dim, q):
        super().__init__()
        self.q = q
        lookup_dim = code_dim
        if q["kind"] == "factorized":
            lookup_dim = q["factor_dim"]
            self.in_proj = nn.Linear(code_dim, lookup_dim)
            self.out_proj = nn.Linear(lookup_dim, code_dim)
        elif q["kind"] != "nearest":
            raise ValueError(f"unknown quantizer.kind '{q['kind']}'; seqgan has nearest and factorized")
        r = q["init_range"] if q.get("init_range", 0) > 0 else 1.0 / codebook_size
        self.embedding = nn.Parameter(torch.empty(codebook_size, lookup_dim).uniform_(-r, r))

    @property
    def factorized(self):
        return self.q["kind"] == "factorized"

    def to_lookup_space(self, z):  # [N, D] -> [N, d]
        return F.normalize(self.in_proj(z), dim=1) if self.factorized else z

    def codes(self):  # [K, d], as looked up
        return F.normalize(self.embedding, dim=1) if self.factorized else self.embedding

    @torch.no_grad()
    def nearest(self, z_e):
        """[B, D, h, w] -> code indices [B, h, w] int64."""
        B, D, h, w = z_e.shape
        z = z_e.permute(0, 2, 3, 1).reshape(-1, D).to(self.embedding.dtype)  # [N, D]
        return squared_distances(self.to_lookup_space(z), self.codes()).argmin(1).view(B, h, w)

    def lookup(self, indices):
        """[B, h, w] -> [B, D, h, w]."""
        e = F.embedding(indices, self.codes())  # [B, h, w, d]
        if self.factorized:
            e = self.out_proj(e)
        return e.permute(0, 3, 1, 2)

    def forward(self, z_e):
        """(z_q with the straight-through gradient [B, D, h, w], indices [B, h, w], loss terms summed)"""
        z_st, indices, terms = self.forward_terms(z_e)
        return z_st, indices, terms["codebook"] + terms["commit"] + terms["entropy"]

    def forward_terms(self, z_e):
        """(z_q with the straight-through gradient [B, D, h, w], indices [B, h, w], {"codebook",
        "commit", "entropy"}: the loss terms apart, seqgan's QuantizerOutput; "commit" includes beta)"""
        B, D, h, w = z_e.shape
        z = self.to_lookup_space(z_e.float().permute(0, 2, 3, 1).reshape(-1, D))  # [N, d]
        e = self.codes()
        q = self.q
        need_soft = q["entropy_gamma"] > 0 or q["per_sample_entropy_gamma"] > 0
        d = squared_distances(z, e) if need_soft else squared_distances(z.detach(), e.detach())
        flat = d.detach().argmin(1)
        z_q = F.embedding(flat, e)  # [N, d]
        codebook_loss = F.mse_loss(z_q, z.detach())
        commit_loss = q["beta"] * F.mse_loss(z, z_q.detach())
        st = z + (z_q - z).detach()
        if self.factorized:
            st = self.out_proj(st)
        z_st = st.view(B, h, w, D).permute(0, 3, 1, 2).to(z_e.dtype)
        entropy_loss = z.new_zeros(())
        if need_soft:
            logp = F.log_softmax(-d / q["entropy_tau"], 1)
            p = logp.exp()
            mean_p = p.mean(0)
            h_mean = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
            entropy_loss = q["entropy_sign"] * q["entropy_gamma"] * h_mean
            if q["per_sample_entropy_gamma"] > 0:
                entropy_loss = entropy_loss + q["per_sample_entropy_gamma"] * -(p * logp).sum(1).mean()
        return z_st, flat.view(B, h, w), {"codebook": codebook_loss, "commit": commit_loss, "entropy": entropy_loss}


class Tokenizer(nn.Module):
    """The VQ tokenizer: encoder, quantizer, decoder. `resolution` (the image side it was trained
    at; None: not checked) is what seqgan_torch.load_tokenizer reads from the file."""

    def __init__(self, tok, quant, image_channels, resolution=None):
        super().__init__()
        if image_channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {image_channels}")
        self.channels, self.resolution = image_channels, resolution
        self.downsample = 2 ** (max(1, len(tok["channel_mult"])) - 1)
        self.codebook_size = tok["codebook_size"]
        self.encoder = Encoder(tok, image_channels)
        self.quantizer = Quantizer(tok["codebook_size"], tok["code_dim"], quant)
        self.decoder = Decoder(tok, image_channels)

    @property
    def grid(self):
        """Codes per image side (None when the resolution is not known)."""
        return None if self.resolution is None else self.resolution // self.downsample

    def forward(self, x):
        """(reconstruction, indices, the quantiser's loss terms summed): a training step's values."""
        z_q, indices, vq_loss = self.quantizer(self.encoder(x))
        return self.decoder(z_q), indices, vq_loss

    def _device(self):
        return self.quantizer.embedding.device

    def encode(self, x):
        """Images [B, C, H, W] in [-1, 1] (moved to the model's device, as float32) -> codes
        [B, h, w] int64, seqgan's TokenizerModel::encode_tensor."""
        r = self.resolution
        if x.dim() != 4 or x.size(1) != self.channels or (r is not None and tuple(x.shape[2:]) != (r, r)):
            side = r if r is not None else "H"
            raise ValueError(f"encode: expected images [B, {self.channels}, {side}, {side}] in [-1, 1], "
                             f"found {list(x.shape)}; bring images to the model's resolution and channels first")
        with torch.no_grad():
            return self.quantizer.nearest(self.encoder(x.to(self._device(), torch.float32)))

    def decode(self, codes):
        """Codes [B, h, w] (integers in [0, K)) -> images [B, C, H, W] float32, unclamped ([-1, 1]
        is the image range), seqgan's TokenizerModel::decode_tensor. Not wrapped in no_grad:
        gradients reach the decoder's weights."""
        g = self.grid
        if codes.dim() != 3 or codes.is_floating_point() or (g is not None and tuple(codes.shape[1:]) != (g, g)):
            side = g if g is not None else "h"
            raise ValueError(f"decode: expected integer codes [B, {side}, {side}], found {list(codes.shape)} "
                             f"of {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"decode: codes outside [0, {self.codebook_size}); decode codes of this tokenizer's codebook")
        z = self.quantizer.lookup(codes.to(self._device(), torch.long))
        return self.decoder(z).float()


@dataclass(frozen=True)
class TokenSpace:
    """The token problem a transformer is built for (seqgan's TokenSpace). Vocabulary: the K codes,
    then one condition token per class (or one start token when unconditional), then the null
    condition (class id num_classes) when the model has one, then the NAR mask token."""
    codebook_size: int
    length: int
    num_classes: int = 0
    null_class: bool = False

    @property
    def condition_tokens(self):
        return self.num_classes + (1 if self.null_class else 0) if self.num_classes > 0 else 1

    @property
    def null_class_id(self):
        return self.num_classes

    @property
    def mask_token(self):
        return self.codebook_size + self.condition_tokens

    @property
    def vocab_size(self):
        return self.mask_token + 1


class SelfAttention(nn.Module):
    def __init__(self, width, heads, dropout):
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x, causal):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # [3, B, h, T, d]
        y = attention(q, k, v, None, causal and T > 1, self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class TransformerBlock(nn.Module):
    def __init__(self, width, heads, mlp, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, causal):
        h = x + self.drop(self.attn(self.ln1(x), causal))
        return h + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(h)))))


class Transformer(nn.Module):
    """seqgan's generative transformer, causal (AR) or bidirectional (NAR), over a TokenSpace.
      AR:  input [cond, s_1 .. s_T] (T <= L - 1 known codes), logits [B, T + 1, K]: position i
           predicts s_{i+1}.
      NAR: input [cond, t_1 .. t_L] (some t_i = space.mask_token), logits [B, L, K] for t_1 .. t_L."""

    def __init__(self, tr, space, causal):
        super().__init__()
        C = tr["width"]
        self.space, self.causal = space, causal
        self.tok_emb = nn.Embedding(space.vocab_size, C)
        self.pos_emb = nn.Parameter(torch.zeros(1, space.length + 1, C))
        self.drop = nn.Dropout(tr["dropout"])
        self.blocks = nn.ModuleList(TransformerBlock(C, tr["heads"], tr["mlp"], tr["dropout"]) for _ in range(tr["layers"]))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, space.codebook_size)

    def condition_tokens(self, cond, batch, device):
        """Class ids [B] -> condition token ids [B] (K + class); the start token K when unconditional."""
        s = self.space
        if s.num_classes == 0:
            return torch.full((batch,), s.codebook_size, dtype=torch.long, device=device)
        if cond is None:
            raise ValueError(f"the transformer is class-conditional ({s.num_classes} classes): pass one class id per row")
        cond = torch.as_tensor(cond, device=device).long().reshape(-1)
        if cond.numel() != batch:
            raise ValueError(f"the class-conditional transformer needs {batch} class ids (one per row), got {cond.numel()}")
        last = s.num_classes - (0 if s.null_class else 1)
        if int(cond.min()) < 0 or int(cond.max()) > last:
            null = f" ({s.num_classes}: the null condition)" if s.null_class else ""
            raise ValueError(f"class id out of range: class ids run from 0 to {s.num_classes - 1}{null}")
        return cond + s.codebook_size

    def forward(self, cond, tokens):
        B, T = tokens.shape
        start = self.condition_tokens(cond, B, tokens.device)
        ids = torch.cat([start.unsqueeze(1), tokens.long()], 1)  # [B, T] -> [B, T + 1]
        if T + 1 > self.pos_emb.size(1):
            raise ValueError(f"a sequence of {T + 1} positions exceeds the model's {self.pos_emb.size(1)}")
        x = self.drop(self.tok_emb(ids) + self.pos_emb[:, : T + 1])
        for b in self.blocks:
            x = b(x, self.causal)
        logits = self.head(self.ln_f(x))
        return logits if self.causal else logits[:, 1:]

    def logits(self, cond, tokens):
        """seqgan's TransformerImpl::forward(cond, tokens), with the inputs checked and moved to the
        model's device. cond: class ids [B] (class id num_classes: the null condition, where the
        model has one; ignored, may be None, when unconditional). AR: tokens [B, T] codes with
        T <= L - 1 -> [B, T + 1, K]. NAR: tokens [B, L] codes or mask tokens -> [B, L, K].
        Dropout follows the module's mode: the loaders return it in eval mode, as seqgan's are."""
        s = self.space
        device = self.pos_emb.device
        tokens = torch.as_tensor(tokens, device=device)
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(f"logits: expected integer tokens [B, T], found {list(tokens.shape)} of {tokens.dtype}")
        if self.causal and tokens.size(1) > s.length - 1:
            raise ValueError(f"logits: an AR model takes at most L - 1 = {s.length - 1} known codes, got {tokens.size(1)}")
        if not self.causal and tokens.size(1) != s.length:
            raise ValueError(f"logits: a NAR model takes all L = {s.length} tokens (unknown ones = mask token "
                             f"{s.mask_token}), got {tokens.size(1)}")
        valid = (tokens >= 0) & (tokens < s.codebook_size)
        if not self.causal:
            valid |= tokens == s.mask_token
        if not bool(valid.all()):
            what = "codes" if self.causal else f"codes or the mask token {s.mask_token}"
            bad = int(tokens[~valid][0])
            raise ValueError(f"logits: tokens must be {what} (K = {s.codebook_size}), found {bad}")
        return self.forward(cond, tokens)
