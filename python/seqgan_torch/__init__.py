"""seqgan's models in PyTorch: a tokenizer or transformer file written by seqgan, loaded strictly
into PyTorch modules that reproduce seqgan's encode, decode and logits (to 1e-5; checked by
tests/test_torch_interop.cpp through `python3 -m seqgan_torch.parity`). Needs torch alone
(Debian's python3-torch); put the source tree's python/ folder on PYTHONPATH.

    import torch
    import seqgan_torch

    tok = seqgan_torch.load_tokenizer("runs/fmnist/tokenizer-phase2/tokenizer.safetensors")
    x = torch.rand(4, tok.channels, tok.resolution, tok.resolution) * 2 - 1  # images in [-1, 1]
    codes = tok.encode(x)                 # [4, grid, grid] int64 code indices
    images = tok.decode(codes)            # [4, C, H, W] float32, unclamped

    ar = seqgan_torch.load_transformer("runs/fmnist/ar/transformer.safetensors")
    cond = torch.tensor([0, 7, 7, ar.space.null_class_id])  # class ids; the last: the null condition
    logits = ar.logits(cond, codes.flatten(1)[:, :-1])      # [4, L, K]: position i predicts code i

    nar = seqgan_torch.load_transformer("runs/fmnist/nar/transformer.safetensors")
    masked = codes.flatten(1).clone()
    masked[:, ::2] = nar.space.mask_token                   # every other code unknown
    logits = nar.logits(cond, masked)                       # [4, L, K]

Both loaders take weights="auto" (the file's exponential moving average of the weights when it
has one, else the raw weights), "ema" or "raw", and device="cpu" (or any torch device); they
return the module in eval mode. The architecture comes from the configuration stored in the
file; a tensor missing, misshapen or left over is a ValueError that lists every difference.
Images here are tensors at the model's resolution: resizing and cropping (seqgan's evaluation
transform) are the caller's part.

seqgan_torch.train_reference holds seqgan's training steps in PyTorch (perceptual loss and its
networks, discriminator, GAN losses, the tokenizer's and transformer's steps), and
`python3 -m seqgan_torch.train_parity DIR` replays a run traced with --trace DIR against it."""
from .load import load_tokenizer, load_transformer
from .models import TokenSpace, Tokenizer, Transformer
from .safetensors_io import read_safetensors

__all__ = ["load_tokenizer", "load_transformer", "Tokenizer", "Transformer", "TokenSpace", "read_safetensors"]
