"""Image metrics implemented in torch: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian, sigma 1.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mse_to_psnr(mse: float) -> float:
    return -10.0 * math.log10(max(float(mse), 1e-12))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    return mse_to_psnr(float(((a.float() - b.float()) ** 2).mean()))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of two [H, W, C] images in [0, 1] (per channel, 'valid' filtering, data range 1)."""
    x = a.float().permute(2, 0, 1)[:, None]
    y = b.float().permute(2, 0, 1)[:, None]
    g = _gaussian(size, sigma).to(x.device)
    k = (g[:, None] * g[None, :])[None, None]

    def blur(t):
        return F.conv2d(t, k)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
