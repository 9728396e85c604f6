"""PyTorch eager versions of seqgan's tokenizer and transformer, written from the same
definitions (layer order, parameter names, initial-value-independent maths) so that a state dict
written by seqgan loads here unchanged. They are the reference that `seqgan bench` times against
and that the test suite checks the C++ outputs with; nothing here is used by seqgan itself.

Configuration dictionaries are seqgan's own JSON sections ("tokenizer", "quantizer",
"transformer"), as `seqgan info --json` prints them."""
import math

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
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


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
        tokens = self._group(h, nh, nw)
        G, L = tokens.shape[:2]
        d = C // self.heads

        def split(t):
            return t.reshape(G, L, self.heads, d).transpose(1, 2)

        mask = None
        if padded:
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

    def forward(self, x):
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level.block(h)
            if i + 1 < len(self.down):
                h = F.avg_pool2d(h, 2)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DecoderLevel(nn.Module):
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

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def squared_distances(z, codes):
    return z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.t() + codes.pow(2).sum(1).unsqueeze(0)


class Quantizer(nn.Module):
    """Nearest code, straight-through gradient, codebook and commitment terms, and the entropy
    regulariser on the soft assignment softmax(-d / tau) (the batch's mean usage)."""

    def __init__(self, codebook_size, code_dim, q):
        super().__init__()
        self.q = q
        self.embedding = nn.Parameter(torch.empty(codebook_size, code_dim).uniform_(-1 / codebook_size, 1 / codebook_size))

    def forward(self, z_e):
        B, D, h, w = z_e.shape
        z = z_e.permute(0, 2, 3, 1).reshape(-1, D)
        q = self.q
        need_soft = q["entropy_gamma"] > 0 or q["per_sample_entropy_gamma"] > 0
        if need_soft:
            d = squared_distances(z, self.embedding)
            indices = d.detach().argmin(1)
        else:
            with torch.no_grad():
                indices = squared_distances(z, self.embedding).argmin(1)
        indices = indices.view(B, h, w)
        z_q = F.embedding(indices, self.embedding).permute(0, 3, 1, 2).contiguous()
        codebook_loss = F.mse_loss(z_q, z_e.detach())
        commit_loss = q["beta"] * F.mse_loss(z_e, z_q.detach())
        z_st = z_e + (z_q - z_e).detach()
        entropy_loss = z_e.new_zeros(())
        if need_soft:
            logp = F.log_softmax(-d / q["entropy_tau"], 1)
            p = logp.exp()
            mean_p = p.mean(0)
            h_mean = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
            entropy_loss = q["entropy_sign"] * q["entropy_gamma"] * h_mean
            if q["per_sample_entropy_gamma"] > 0:
                entropy_loss = entropy_loss + q["per_sample_entropy_gamma"] * -(p * logp).sum(1).mean()
        return z_st, indices, codebook_loss + commit_loss + entropy_loss


class Tokenizer(nn.Module):
    def __init__(self, tok, quant, image_channels):
        super().__init__()
        self.encoder = Encoder(tok, image_channels)
        self.quantizer = Quantizer(tok["codebook_size"], tok["code_dim"], quant)
        self.decoder = Decoder(tok, image_channels)

    def forward(self, x):
        """(reconstruction, indices, the quantiser's loss terms summed)"""
        z_q, indices, vq_loss = self.quantizer(self.encoder(x))
        return self.decoder(z_q), indices, vq_loss


class SelfAttention(nn.Module):
    def __init__(self, width, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x, causal):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
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
    """Token ids: the K codes, then one start token per class (K + class), or K alone when
    unconditional. AR: the start token then tokens[:-1], logits at every position; NAR: the start
    token then all tokens (mask id K + classes), logits of the tokens."""

    def __init__(self, tr, codebook_size, length, num_classes, causal):
        super().__init__()
        C = tr["width"]
        self.K, self.num_classes, self.causal = codebook_size, num_classes, causal
        vocab = codebook_size + max(num_classes, 1) + 1  # + the NAR mask id
        self.tok_emb = nn.Embedding(vocab, C)
        self.pos_emb = nn.Parameter(torch.zeros(1, length + 1, C))
        self.drop = nn.Dropout(tr["dropout"])
        self.blocks = nn.ModuleList(TransformerBlock(C, tr["heads"], tr["mlp"], tr["dropout"]) for _ in range(tr["layers"]))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, codebook_size)

    def forward(self, cond, tokens):
        B, T = tokens.shape
        start = cond + self.K if self.num_classes > 0 else torch.full((B,), self.K, dtype=torch.long)
        ids = torch.cat([start.unsqueeze(1), tokens], 1)
        x = self.drop(self.tok_emb(ids) + self.pos_emb[:, : T + 1])
        for b in self.blocks:
            x = b(x, self.causal)
        logits = self.head(self.ln_f(x))
        return logits if self.causal else logits[:, 1:]
