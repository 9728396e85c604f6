#!/usr/bin/env python3
"""Reference values of ADM's evaluation metrics on random features, and of SSIM and PSNR on random
image pairs, for the C++ comparisons (tests/test_adm_metrics.cpp). Everything here is written with
numpy, scipy and scikit-image from the papers' descriptions of the algorithms:

  FID   ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) with numpy's mean and np.cov and
        scipy.linalg.sqrtm (retrying with 1e-6 on the diagonals if the product is singular)
  IS    parts of `split` consecutive samples; exp(mean KL(p(y|x) || p(y))) per part; their mean
  P/R   improved precision and recall (Kynkaanniemi et al. 2019): squared Euclidean distances of
        all pairs at once (no batching), the radius of each feature its k-th smallest distance in
        its own set counting itself (k = 3); precision = fraction of generated features inside
        some reference ball, recall = fraction of reference features inside some generated ball
  SSIM  skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255), per channel and averaged for RGB
  PSNR  10 log10(255^2 / MSE) of the 8-bit values

    /usr/bin/python3 tools/adm_metric_fixtures.py OUTDIR

Writes into OUTDIR:
  expected.safetensors  pr.ref [300, 16], pr.gen [250, 16] (float32; the generated set shifted, so
                          precision and recall differ from each other and from 0 and 1),
                          pr.precision, pr.recall [1]; pr_dup.* the same for sets with
                          repeated rows (radius 0 where a row has k copies: ties must count);
                          fid.f1 [400, 24], fid.f2 [300, 24] (float64), fid.value [1];
                          is.logits [1200, 10], is.value_500 [1] (parts of 500: 3 parts),
                          is.value_5000 [1] (one part);
                          ssim.x, ssim.y [4, 3, 40, 36] and grey [3, 1, 32, 32] uint8 pairs with
                          ssim.rgb [4], ssim.grey [3], psnr.rgb [4], psnr.grey [3] (float64)
  features.npz           `features` = pr.ref (np.savez), for `evaluate pr`
  samples.npz            `features` = pr.gen
  pairs/ref, pairs/gen   grey pairs 1 and 2 as PNG files 1.png, 2.png (PIL), for
                          `evaluate ssim|psnr --ref --gen`
"""
import os
import sys

import numpy as np
from PIL import Image
from scipy import linalg
from skimage.metrics import structural_similarity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402


def fid(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)


def sq_dist(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def precision_recall(ref, gen, k=3):
    r_ref = np.sort(sq_dist(ref, ref), axis=1)[:, k]
    r_gen = np.sort(sq_dist(gen, gen), axis=1)[:, k]
    d = sq_dist(ref, gen)  # [R, G]
    precision = (d <= r_ref[:, None]).any(axis=0).mean()
    recall = (d <= r_gen[None, :]).any(axis=1).mean()
    return precision, recall


def inception_score(logits, split):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), split):
        part = p[i:i + split]
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(11)
    t = {}
    # Rounded to a 1/64 grid: the float32 distances of the C++ side and the float64 ones here
    # are then exact, so ties at a radius fall the same way on both sides.
    ref = np.round(rng.normal(size=(300, 16)) * 64) / 64
    gen = np.round((rng.normal(size=(250, 16)) * 1.3 + 0.4) * 64) / 64
    t["pr.ref"], t["pr.gen"] = ref.astype(np.float32), gen.astype(np.float32)
    p, r = precision_recall(ref, gen)
    t["pr.precision"], t["pr.recall"] = np.array([p]), np.array([r])
    # rows 0..4 four times (radius 0: distance <= radius must count), rows 5..19 twice
    dup = np.concatenate([ref[:100], ref[:20], ref[:5], ref[:5]])
    gen2 = np.concatenate([gen[:80], ref[:10]])
    t["pr_dup.ref"], t["pr_dup.gen"] = dup.astype(np.float32), gen2.astype(np.float32)
    p, r = precision_recall(dup, gen2)
    t["pr_dup.precision"], t["pr_dup.recall"] = np.array([p]), np.array([r])

    f1 = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) / 5
    f2 = rng.normal(size=(300, 24)) @ rng.normal(size=(24, 24)) / 5 + 0.3
    t["fid.f1"], t["fid.f2"], t["fid.value"] = f1, f2, np.array([fid(f1, f2)])

    logits = rng.normal(size=(1200, 10)) * 2
    t["is.logits"] = logits
    t["is.value_500"] = np.array([inception_score(logits, 500)])
    t["is.value_5000"] = np.array([inception_score(logits, 5000)])

    x = rng.integers(0, 256, size=(4, 3, 40, 36), dtype=np.uint8)
    noise = rng.integers(-40, 41, size=x.shape)
    y = np.clip(x.astype(int) + noise, 0, 255).astype(np.uint8)
    smooth = np.linspace(0, 255, 32)[None, :].repeat(32, 0)
    xg = np.stack([np.clip(smooth + rng.normal(size=(32, 32)) * s, 0, 255) for s in (5, 20, 60)]).astype(np.uint8)[:, None]
    yg = np.stack([np.clip(smooth.T + rng.normal(size=(32, 32)) * 10, 0, 255) for _ in range(3)]).astype(np.uint8)[:, None]
    yg[0] = xg[0]  # one identical pair: SSIM 1, PSNR infinite
    t["ssim.x"], t["ssim.y"], t["ssim.xg"], t["ssim.yg"] = x, y, xg, yg
    ssim_kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    t["ssim.rgb"] = np.array([structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), channel_axis=2, **ssim_kw)
                              for a, b in zip(x, y)])
    t["ssim.grey"] = np.array([structural_similarity(a[0], b[0], **ssim_kw) for a, b in zip(xg, yg)])

    def psnr(a, b):
        mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
        return np.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    t["psnr.rgb"] = np.array([psnr(a, b) for a, b in zip(x, y)])
    t["psnr.grey"] = np.array([psnr(a, b) for a, b in zip(xg, yg)])

    np.savez(os.path.join(out, "features.npz"), features=t["pr.ref"])
    np.savez(os.path.join(out, "samples.npz"), features=t["pr.gen"])
    for side, imgs in (("ref", xg), ("gen", yg)):
        os.makedirs(os.path.join(out, "pairs", side), exist_ok=True)
        for i, im in enumerate(imgs[1:], start=1):  # not the identical pair (PSNR infinite)
            Image.fromarray(im[0], mode="L").save(os.path.join(out, "pairs", side, f"{i}.png"))
    write_safetensors(os.path.join(out, "expected.safetensors"), t)


if __name__ == "__main__":
    main()
