#!/usr/bin/env python3
"""Frechet distances computed the way pytorch-fid computes them (scipy.linalg.sqrtm of the
covariance product), for the C++ comparison (tests/test_metrics.cpp).

    /usr/bin/python3 tools/frechet_fixtures.py OUTDIR

Writes OUTDIR/expected.safetensors with, per case, <case>.mu1, <case>.sigma1, <case>.mu2,
<case>.sigma2 (float64) and <case>.fd [1], and <case>.features1 / <case>.features2 (the samples the
statistics were fitted to, float64, so the test can check the fit as well):
  well      D = 32, N = 500 per side, correlated Gaussians with different means and covariances
  deficient D = 64, N = 40 per side (covariances of rank 39: fewer samples than dimensions)
  same      the same 500 samples on both sides (distance 0 up to rounding)
For singular products sqrtm can return non-finite or complex values; like pytorch-fid, the
script then retries with 1e-6 added to both diagonals and keeps the real part.
"""
import os
import sys

import numpy as np
from scipy import linalg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402


def frechet_scipy(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def samples(rng, n, d, shift):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift + rng.normal(size=d) * 0.5


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = {"well": (samples(rng, 500, 32, 0.0), samples(rng, 500, 32, 0.3)),
             "deficient": (samples(rng, 40, 64, 0.0), samples(rng, 40, 64, 0.2))}
    same = samples(rng, 500, 32, 0.0)
    cases["same"] = (same, same.copy())
    tensors = {}
    for name, (f1, f2) in cases.items():
        mu1, mu2 = f1.mean(0), f2.mean(0)
        s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
        tensors.update({f"{name}.features1": f1, f"{name}.features2": f2, f"{name}.mu1": mu1, f"{name}.sigma1": s1,
                        f"{name}.mu2": mu2, f"{name}.sigma2": s2,
                        f"{name}.fd": np.array([frechet_scipy(mu1, s1, mu2, s2)], dtype=np.float64)})
    write_safetensors(os.path.join(out, "expected.safetensors"), tensors)


if __name__ == "__main__":
    main()
