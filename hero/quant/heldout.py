"""Held-out rays: a fixed random set of pixels of held-out views, and a field's errors on them.

The search scores every policy on them (hero.search.score), and QAT selects the model it keeps on
them (hero.qat): many thousands of pixels of many views measure a PSNR difference far more finely
than a few rendered views, at a fraction of the rendering cost.
"""

from __future__ import annotations

import numpy as np
import torch

from hero.data.rays import pixel_rays
from hero.nerf.metrics import mse_to_psnr
from hero.nerf.render import camera_meta, prepare_rays, render_rays_inference

CHUNK = 4096  # rays rendered at once


def held_out_rays(scene, n_rays: int, seed: int = 0):
    """A fixed random set of pixels of the held-out views: origins, directions, colours."""
    rng = np.random.default_rng(seed)
    meta = camera_meta(scene)
    c2w = torch.as_tensor(np.asarray(scene.c2w), dtype=torch.float32)
    idx = torch.from_numpy(rng.integers(0, len(c2w), n_rays))
    px = torch.from_numpy(rng.integers(0, meta["width"], n_rays))
    py = torch.from_numpy(rng.integers(0, meta["height"], n_rays))
    o, d = prepare_rays(*pixel_rays(c2w[idx], px, py, meta["fx"], meta["fy"], meta["cx"], meta["cy"]), meta)
    target = torch.from_numpy(scene.images)[idx, py, px].float() / 255.0
    return o, d, target


@torch.no_grad()
def squared_errors(field, grid, rays, dt: float, max_steps: int, background) -> torch.Tensor:
    """(R, 3): each held-out ray's squared colour error (rendered with early termination, clamped to [0, 1])."""
    o, d, target = rays
    color = torch.cat([render_rays_inference(field, grid, o[i:i + CHUNK], d[i:i + CHUNK], dt, max_steps,
                                             background)[0] for i in range(0, len(o), CHUNK)])
    return (color.clamp(0, 1) - target) ** 2


def psnr_of(errors: torch.Tensor) -> float:
    """PSNR of squared errors (the mean over every ray and channel)."""
    return mse_to_psnr(float(errors.mean()))


def rays_psnr(field, grid, rays, dt: float, max_steps: int, background) -> float:
    """A field's PSNR on the held-out rays."""
    return psnr_of(squared_errors(field, grid, rays, dt, max_steps, background))


def gain_margin_db(errors: torch.Tensor, reference: torch.Tensor, z: float) -> float:
    """How far `errors`' PSNR stands above `reference`'s, in dB, after z standard errors of ray sampling.

    Both are the same rays' squared errors, so the per-ray differences are a paired sample: their
    mean is the MSE gained, their standard error the sampling noise of that gain. The result is the
    PSNR gain with the MSE taken z standard errors higher; above 0, the gain holds up beyond z
    standard errors (z = 0: the plain PSNR difference)."""
    e, r = errors.double().mean(-1), reference.double().mean(-1)
    se = float((r - e).std()) / len(e) ** 0.5 if len(e) > 1 else 0.0
    return 10.0 * float(np.log10(max(float(r.mean()), 1e-20) / max(float(e.mean()) + z * se, 1e-20)))
